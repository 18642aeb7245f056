"""Swarm admission is atomic (issue 10): one script checks, stores and admits the members.

A refused add leaves nothing behind because nothing was written, not because
something was cleaned up afterwards: these tests forbid the clean-up path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import mageflow
import pytest
from mageflow import (
    BulkValidationError,
    ChainSignature,
    MageflowValidationError,
    SignatureNotFoundError,
    SwarmClosedError,
    SwarmConfig,
    SwarmFullError,
    TaskSignature,
    _handover,
)
from mageflow._store.keys import F
from mageflow.inmemory import InMemoryTaskManager

from tests.integration._helpers import Raw
from tests.integration.container_models import Num

pytestmark = pytest.mark.usefixtures("runtime")


@pytest.fixture
def no_cleanup(monkeypatch: pytest.MonkeyPatch) -> list[Sequence[str]]:
    """Record every compensating removal; an atomic refusal needs none."""
    calls: list[Sequence[str]] = []
    real = _handover.discard

    async def discard(runtime: Any, keys: Sequence[str]) -> None:
        calls.append(list(keys))
        await real(runtime, keys)

    monkeypatch.setattr(_handover, "discard", discard)
    return calls


async def _refused(
    raw: Raw, call: Callable[[], Awaitable[Any]], error: type[Exception]
) -> pytest.ExceptionInfo[Exception]:
    before = await raw.snapshot(indexes=True)
    with pytest.raises(error) as info:
        await call()
    assert await raw.snapshot(indexes=True) == before
    return info


async def test_refused_adds_write_nothing_at_all(raw: Raw, no_cleanup: list[Sequence[str]]) -> None:
    cb = await mageflow.asign("cb")
    closed = await mageflow.aswarm(is_swarm_closed=True)
    cancelled = await mageflow.aswarm()
    await cancelled.cancel()
    full = await mageflow.aswarm(config=SwarmConfig(max_task_allowed=3000))
    member = await mageflow.asign("member")
    other = await mageflow.aswarm(tasks=[member])
    open_swarm = await mageflow.aswarm()

    def tasks() -> list[Any]:
        # task names (signed in the script), a stored key and an unsaved signature
        return [*["t"] * 2000, cb.key, TaskSignature(task_name="elsewhere", success_callbacks=[cb])]

    await _refused(raw, lambda: closed.aio_run_in_swarm(tasks()), SwarmClosedError)
    await _refused(raw, lambda: cancelled.aio_run_in_swarm(tasks()), SwarmClosedError)
    await _refused(raw, lambda: full.aio_run_in_swarm([*tasks(), *["t"] * 1000]), SwarmFullError)
    # the last of 2 002 members belongs to another swarm already
    taken = await _refused(
        raw, lambda: open_swarm.aio_run_in_swarm([*tasks(), member]), MageflowValidationError
    )
    assert taken.value.key == member.key
    twice = await _refused(
        raw, lambda: open_swarm.aio_run_in_swarm([cb.key, *tasks()]), MageflowValidationError
    )
    assert twice.value.key == cb.key
    # an unsaved member whose callback is not stored
    lost = TaskSignature(task_name="elsewhere", success_callbacks=["task-not-stored"])
    missing = await _refused(
        raw, lambda: open_swarm.aio_run_in_swarm([*["t"] * 500, lost]), SignatureNotFoundError
    )
    assert "'task-not-stored' (a swarm member, or a callback of a new one)" in str(missing.value)
    assert no_cleanup == [[]] * 6  # nothing was stored ahead of the script
    assert await mageflow.load_signature(lost.key) is None
    assert other.key  # the other swarm still holds its member
    assert (await raw.hash(member.key))[F.parent] == other.key


async def test_messages_that_are_not_json_are_reported_by_index(
    raw: Raw, no_cleanup: list[Sequence[str]]
) -> None:
    swarm = await mageflow.aswarm()
    msgs: list[Any] = [{"x": i} for i in range(1000)]
    msgs[3] = {"x": object()}
    msgs[700] = [1, 2]
    msgs[901] = {"x": float("nan")}
    info = await _refused(
        raw, lambda: swarm.aio_run_tasks_in_swarm(["t"] * 1000, msgs), BulkValidationError
    )
    err = info.value
    assert isinstance(err, BulkValidationError)
    assert [(i, f) for i, f, _ in err.errors] == [(3, "msg.x"), (700, "msg"), (901, "msg.x")]
    assert no_cleanup == []  # refused before anything was sent


async def test_an_admitted_unsaved_signature_is_stored_whole(
    manager: InMemoryTaskManager, raw: Raw
) -> None:
    seen: list[Any] = []

    @manager.task("work")
    async def work(msg: Num) -> int:
        return msg.x * 10

    @manager.task("cb")
    async def cb_task(msg: dict[str, Any]) -> None:
        seen.append(msg)

    cb = await mageflow.asign("cb")
    unsaved = TaskSignature(task_name="work", kwargs={"x": 4}, success_callbacks=[cb])
    swarm = await mageflow.aswarm(config=SwarmConfig(max_concurrency=2))
    keys = await swarm.aio_run_in_swarm(["work", unsaved, "work"], {"x": 1})
    assert keys[1] == unsaved.key
    stored = await raw.hash(unsaved.key)
    assert stored[F.parent] == swarm.key and stored[F.parent_index] == "1"
    assert stored[F.callbacks_ok] == f'["{cb.key}"]'
    assert (await raw.hash(cb.key))[F.refs] == "1"  # one unsettled parent holds it
    roots = {s.key for s in await mageflow.list_signatures(limit=100)}
    assert unsaved.key not in roots and cb.key not in roots and swarm.key in roots
    by_task = {s.key for s in await mageflow.list_signatures(task="work", limit=100)}
    assert set(keys) <= by_task
    await swarm.aio_run_no_wait()
    await swarm.close_swarm()
    await manager.wait_idle()
    assert seen and seen[0]["mageflow_results"] == 40


async def test_an_unsaved_chain_in_a_refused_add_is_removed_again(
    raw: Raw, no_cleanup: list[Sequence[str]]
) -> None:
    # a composition is a flow of its own: stored ahead of the script, removed on refusal
    closed = await mageflow.aswarm(is_swarm_closed=True)
    before = await raw.snapshot(indexes=True)
    chain = ChainSignature(tasks=[TaskSignature(task_name="a"), TaskSignature(task_name="b")])
    with pytest.raises(SwarmClosedError):
        await closed.aio_run_in_swarm(["t", chain, "t"])
    assert await raw.snapshot(indexes=True) == before
    assert len(no_cleanup) == 1 and len(no_cleanup[0]) == 3


async def test_a_refused_flow_never_removes_a_stored_signature_attached_to_it(raw: Raw) -> None:
    cb = await mageflow.asign("cb")
    closed = await mageflow.aswarm(is_swarm_closed=True)
    before = await raw.snapshot(indexes=True)
    with_cb = ChainSignature(
        tasks=[TaskSignature(task_name="a", success_callbacks=[cb]), TaskSignature(task_name="b")]
    )
    with pytest.raises(SwarmClosedError):
        await closed.aio_run_in_swarm([with_cb])
    with pytest.raises(SignatureNotFoundError):
        await mageflow.achain(
            [TaskSignature(task_name="a", success_callbacks=[cb]), "b"], success=["task-gone"]
        )
    assert await raw.snapshot(indexes=True) == before
    assert await mageflow.load_signature(cb.key) is not None


async def test_signed_members_are_admitted_without_being_read_back(
    manager: InMemoryTaskManager, runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    done: list[int] = []

    @manager.task("work")
    async def work(msg: Num) -> int:
        done.append(msg.x)
        return msg.x

    sigs = await mageflow.asign_many("work", [{"x": i} for i in range(1500)])

    async def no_reads(keys: Sequence[str]) -> list[Any]:
        raise AssertionError(f"read {len(keys)} signatures back")

    monkeypatch.setattr(runtime.store, "load_many", no_reads)
    swarm = await mageflow.aswarm(config=SwarmConfig(max_concurrency=50))
    keys = await swarm.aio_run_in_swarm([*sigs, "work"], {"x": -1})
    assert keys[:-1] == [s.key for s in sigs]
    await swarm.aio_run_no_wait()
    await swarm.close_swarm()
    await manager.wait_idle(timeout=60)
    assert sorted(done) == [-1, *range(1500)]  # bound kwargs win over the message
