"""Every cell of the transition table, valid and invalid, against the store."""

from __future__ import annotations

from typing import Any

import mageflow
import pytest
from mageflow import (
    InvalidTransitionError,
    MageflowRuntime,
    SignatureNotFoundError,
    SignatureStatus,
    TaskSignature,
    TaskStatus,
)
from thirdmagic import TRANSITIONS, LifecycleEvent, next_status

from tests.integration._helpers import Raw

S = SignatureStatus
E = LifecycleEvent

STARTS: list[TaskStatus] = [TaskStatus(status=s) for s in S] + [
    TaskStatus(status=S.SUSPENDED, last_status=S.ACTIVE),
    TaskStatus(status=S.SUSPENDED, last_status=S.PENDING),
]
# retry needs a signature that ran (its stored input is dispatched again): its
# cells are covered in tests/integration/test_outcomes.py
CASES = [(st, e) for st in STARTS for e in E if e is not E.RETRY]
RUN_EVENTS = (E.START, E.SUCCEED, E.FAIL, E.SKIP)  # applied by the store, never by hand
USER_CASES = [(st, e) for st, e in CASES if e not in RUN_EVENTS]
RUN_CASES = [(st, e) for st, e in CASES if e in RUN_EVENTS]


async def _stored(runtime: MageflowRuntime, status: TaskStatus, **kwargs: Any) -> TaskSignature:
    """A signature stored directly in any status (asign refuses terminal initial ones)."""
    sig = TaskSignature(task_name="t", task_status=status, kwargs=kwargs)
    await runtime.store.create(sig)
    return sig


def _id(case: tuple[TaskStatus, LifecycleEvent]) -> str:
    st, e = case
    prev = f"({st.last_status.value})" if st.last_status else ""
    return f"{st.status.value}{prev}-{e.value}"


@pytest.mark.parametrize("case", USER_CASES, ids=[_id(c) for c in USER_CASES])
async def test_transition_cell(
    case: tuple[TaskStatus, LifecycleEvent], runtime: MageflowRuntime, raw: Raw
) -> None:
    start, event = case
    sig = await _stored(runtime, start, a=1)
    before = await raw.hash(sig.key)
    expected = next_status(start.status, event, start.last_status)
    if expected is None:
        with pytest.raises(InvalidTransitionError) as info:
            await runtime.apply(sig.key, event)
        err = info.value
        assert (err.key, err.status, err.event) == (sig.key, start.status.value, event.value)
        assert sig.key in str(err)
        assert repr(start.status.value) in str(err)
        assert event.value in str(err)
        assert await raw.hash(sig.key) == before
        return
    result = await runtime.apply(sig.key, event)
    after = await raw.hash(sig.key)
    assert result.status == expected
    assert after["s"] == expected.value
    if expected != start.status:
        assert after["ls"] == start.status.value
        assert result.last_status == start.status
        changed = {f for f in set(before) | set(after) if before.get(f) != after.get(f)}
        assert changed <= {"s", "ls"}
    else:
        assert after == before  # a transition to the same status is a no-op
    # Repeating the event never corrupts: it is a no-op or it is refused.
    try:
        await runtime.apply(sig.key, event)
    except InvalidTransitionError:
        assert await raw.hash(sig.key) == after
    else:
        again = await raw.hash(sig.key)
        assert again["s"] in (expected.value, (start.last_status or S.PENDING).value)
    loaded = await mageflow.load_signature(sig.key)
    assert loaded is not None
    assert loaded.kwargs == {"a": 1}


@pytest.mark.parametrize("case", RUN_CASES, ids=[_id(c) for c in RUN_CASES])
async def test_run_events_are_refused_to_lifecycle_calls(
    case: tuple[TaskStatus, LifecycleEvent], runtime: MageflowRuntime, raw: Raw
) -> None:
    """start/succeed/fail come with a run (its id, outcome, callbacks): only the
    worker's BEGIN and FINISH apply them."""
    start, event = case
    sig = await _stored(runtime, start)
    before = await raw.hash(sig.key)
    with pytest.raises(InvalidTransitionError, match="worker") as info:
        await runtime.apply(sig.key, event)
    assert (info.value.key, info.value.status, info.value.event) == (
        sig.key,
        start.status.value,
        event.value,
    )
    assert await raw.hash(sig.key) == before


@pytest.mark.parametrize("case", RUN_CASES, ids=[_id(c) for c in RUN_CASES])
async def test_run_event_cell(
    case: tuple[TaskStatus, LifecycleEvent], runtime: MageflowRuntime, raw: Raw
) -> None:
    """The cells of start/succeed/fail, applied the way a run applies them."""
    start, event = case
    sig = await _stored(runtime, start)
    expected = next_status(start.status, event, start.last_status)
    if event is E.SKIP:
        # applied to a callback when its parent settles the other way
        before = await raw.hash(sig.key)
        parent = TaskSignature(task_name="p", error_callbacks=[sig.key])
        await runtime.store.create(parent, [sig.key])
        await raw.client.hset(raw.sig_key(parent.key), mapping={"s": "active", "r": "run-p"})
        await runtime.store.finish(parent.key, succeeded=True, run_id="run-p", payload=None)
        after = await raw.hash(sig.key)
        assert after["s"] == (expected or start.status).value
        if expected is None or expected == start.status:
            assert {k: v for k, v in after.items() if k != "rc"} == before
        return
    await raw.client.hset(raw.sig_key(sig.key), mapping={"d": "d1", "r": "run-1"})
    before = await raw.hash(sig.key)
    if event is E.START:
        await runtime.store.begin(sig.key, "d1", "run-2", {})
    else:
        await runtime.store.finish(
            sig.key, succeeded=event is E.SUCCEED, run_id="run-1", payload=None
        )
    after = await raw.hash(sig.key)
    if expected is None:
        assert after == before
    else:
        assert after["s"] == expected.value


def test_cases_cover_every_cell() -> None:
    covered = {(st.status, e) for st, e in CASES}
    assert {c for c in TRANSITIONS if c[1] is not E.RETRY} <= covered
    assert len(covered) == len(S) * (len(E) - 1)


@pytest.mark.parametrize("event", list(E), ids=lambda e: e.value)
async def test_transition_of_missing_key(event: LifecycleEvent, runtime: MageflowRuntime) -> None:
    with pytest.raises(SignatureNotFoundError, match="task-missing") as info:
        await runtime.apply("task-missing", event)
    assert info.value.key == "task-missing"


async def test_full_path_through_the_table(runtime: MageflowRuntime, raw: Raw) -> None:
    """User events through TRANSITION, run events through BEGIN and FINISH."""
    store = runtime.store
    sig = await mageflow.asign("t")

    async def user(event: LifecycleEvent, dispatch_id: str = "") -> None:
        await store.transition(sig.key, event, "", dispatch_id)

    path = [
        (lambda: user(E.SUSPEND), S.SUSPENDED),
        (lambda: user(E.RESUME), S.PENDING),
        (lambda: store.dispatch(sig.key, {}, "d1", ""), S.PENDING),
        (lambda: store.begin(sig.key, "d1", "run-1", {}), S.ACTIVE),
        (lambda: user(E.SUSPEND), S.SUSPENDED),
        (lambda: user(E.RESUME), S.ACTIVE),
        (lambda: user(E.INTERRUPT), S.INTERRUPTED),
        (lambda: user(E.RESUME, "d2"), S.PENDING),  # the interrupted run is replayed
        (lambda: store.begin(sig.key, "d2", "run-2", {}), S.ACTIVE),
        (lambda: store.finish(sig.key, succeeded=True, run_id="run-2", payload=1), S.DONE),
    ]
    for i, (call, want) in enumerate(path):
        await call()
        assert await raw.status(sig.key) == want.value, i


# -- worker-side transitions (begin / finish) ------------------------------------------


async def test_begin_and_finish_codes(runtime: MageflowRuntime, raw: Raw) -> None:
    store = runtime.store
    cb = await mageflow.asign("cb", tag="x")
    sig = await mageflow.asign("t", success_callbacks=[cb])
    await store.dispatch(sig.key, {"a": 1}, "d1", "")
    stale = await store.begin(sig.key, "d0", "run-0", {"a": 1})
    assert (stale.decision, stale.reason) == ("skip", "stale")
    begun = await store.begin(sig.key, "d1", "run-1", {"a": 1})
    assert begun.decision == "run"
    assert begun.signature is not None
    assert begun.signature.status == S.ACTIVE
    duplicate = await store.begin(sig.key, "d1", "run-2", {"a": 1})
    assert (duplicate.decision, duplicate.reason) == ("skip", "duplicate")
    retry = await store.begin(sig.key, "d1", "run-1", {"a": 1})
    assert retry.decision == "run"

    before = await raw.hash(sig.key)
    code, outbox = await store.finish(sig.key, succeeded=True, run_id="run-2", payload=1)
    assert (code, outbox) == ("stale", [])
    assert await raw.hash(sig.key) == before

    code, outbox = await store.finish(sig.key, succeeded=True, run_id="run-1", payload={"r": 1})
    assert code == "ok"
    assert [(e.key, e.task_name, e.kwargs) for e in outbox] == [(cb.key, "cb", {"tag": "x"})]
    done = await raw.hash(sig.key)
    assert done["s"] == "done"
    assert done["ls"] == "active"

    code2, outbox2 = await store.finish(sig.key, succeeded=True, run_id="run-1", payload={"r": 1})
    assert code2 == "already"
    assert outbox2 == outbox
    assert await raw.hash(sig.key) == done

    code3, _ = await store.finish(sig.key, succeeded=False, run_id="run-1", payload="x")
    assert code3 == "invalid"
    assert await raw.hash(sig.key) == done

    redelivered = await store.begin(sig.key, "d1", "run-1", {"a": 1})
    assert redelivered.decision == "drain"
    assert [e.key for e in redelivered.outbox] == [cb.key]
    other = await store.begin(sig.key, "d1", "run-9", {"a": 1})
    assert (other.decision, other.reason) == ("skip", "finished")
    assert await raw.hash(sig.key) == done


@pytest.mark.parametrize("status", [S.PENDING, S.INTERRUPTED, S.CANCELED, S.FAILED])
async def test_finish_from_status_that_is_not_running_changes_nothing(
    status: S, runtime: MageflowRuntime, raw: Raw
) -> None:
    sig = await _stored(runtime, TaskStatus(status=status))
    before = await raw.hash(sig.key)
    code, outbox = await runtime.store.finish(sig.key, succeeded=True, run_id="r", payload=1)
    assert code == "invalid"
    assert outbox == []
    assert await raw.hash(sig.key) == before


@pytest.mark.parametrize("status", [S.INTERRUPTED, S.CANCELED])
async def test_begin_on_stopped_signature_is_skipped(
    status: S, runtime: MageflowRuntime, raw: Raw
) -> None:
    sig = await _stored(runtime, TaskStatus(status=status))
    before = await raw.hash(sig.key)
    begun = await runtime.store.begin(sig.key, "d", "r", {})
    assert begun.decision == "skip"
    assert await raw.hash(sig.key) == before


@pytest.mark.parametrize("status", [S.ACTIVE, S.INTERRUPTED, S.DONE, S.FAILED, S.CANCELED])
async def test_dispatch_from_status_that_does_not_accept_a_run(
    status: S, runtime: MageflowRuntime, raw: Raw
) -> None:
    sig = await _stored(runtime, TaskStatus(status=status))
    before = await raw.hash(sig.key)
    with pytest.raises(InvalidTransitionError, match=rf"{sig.key}.*{status.value}"):
        await sig.aio_run_no_wait({"x": 1})
    assert await raw.hash(sig.key) == before
