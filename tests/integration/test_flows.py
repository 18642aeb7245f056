"""In-memory flows: runs, callbacks with injected results, retries, suspend and interrupt."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import mageflow
import pytest
from mageflow import MageflowRuntime, RunRequest, SignatureStatus
from mageflow.inmemory import InMemoryTask, InMemoryTaskManager, NonRetryableError, RunRecord
from pydantic import BaseModel

from tests.integration._helpers import Raw, eventually
from tests.integration.models import (
    DefaultFieldCallback,
    ErrorCallbackMsg,
    ExplicitFormCallback,
    LegacyFieldCallback,
    OrderMsg,
    ShortFormCallback,
)

pytestmark = pytest.mark.usefixtures("runtime")


class Recorder:
    """Collects what task bodies received."""

    def __init__(self) -> None:
        self.calls: dict[str, list[Any]] = {}

    def add(self, name: str, value: Any) -> None:
        self.calls.setdefault(name, []).append(value)

    def of(self, name: str) -> list[Any]:
        return self.calls.get(name, [])


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


def callback_task(
    manager: InMemoryTaskManager, rec: Recorder, name: str, model: type[BaseModel]
) -> InMemoryTask:
    @manager.task(name, input_validator=model)
    async def cb(msg: Any) -> str:
        rec.add(name, msg)
        return name

    return cb


def gate(manager: InMemoryTaskManager, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Hold every dispatched run before it reaches the worker path until the event is set."""
    opened = asyncio.Event()
    original = manager._execute

    async def held(task: InMemoryTask, record: RunRecord) -> None:
        await opened.wait()
        await original(task, record)

    monkeypatch.setattr(manager, "_execute", held)
    return opened


def _records(manager: InMemoryTaskManager, task_name: str) -> list[RunRecord]:
    return [r for r in manager.runs.values() if r.task_name == task_name]


# -- success callbacks -------------------------------------------------------------------

FORMS: list[tuple[type[BaseModel], Any, Callable[[Any], Any]]] = [
    (ShortFormCallback, {"order_id": 7, "total": 30}, lambda m: m.order),
    (ExplicitFormCallback, 30, lambda m: m.total),
    (DefaultFieldCallback, [1, "two", None], lambda m: m.mageflow_results),
    (LegacyFieldCallback, "legacy", lambda m: m.results),
]


@pytest.mark.parametrize("form", FORMS, ids=[f[0].__name__ for f in FORMS])
async def test_success_callback_receives_the_return_value(
    manager: InMemoryTaskManager,
    rec: Recorder,
    raw: Raw,
    form: tuple[type[BaseModel], Any, Callable[[Any], Any]],
) -> None:
    model, value, read = form

    @manager.task("parent", input_validator=OrderMsg)
    async def parent(msg: OrderMsg) -> Any:
        rec.add("parent", msg)
        return value

    cb_task = callback_task(manager, rec, "notify", model)
    cb = await mageflow.asign(cb_task, channel="sms")
    sig = await mageflow.asign(parent, success_callbacks=[cb])
    await sig.aio_run_no_wait(OrderMsg(order_id=7))
    await manager.wait_idle()

    assert len(rec.of("parent")) == 1
    (got,) = rec.of("notify")
    assert isinstance(got, model)
    assert read(got) == value
    assert got.channel == "sms"  # type: ignore[attr-defined]
    assert await raw.status(sig.key) == "done"
    assert await raw.status(cb.key) == "done"


async def test_callback_without_a_known_model_gets_default_field(
    manager: InMemoryTaskManager, rec: Recorder
) -> None:
    @manager.task("parent")
    async def parent(msg: dict[str, Any]) -> int:
        return 5

    @manager.task("loose")
    async def loose(msg: dict[str, Any]) -> None:
        rec.add("loose", msg)

    cb = await mageflow.asign("loose", tag="t")
    sig = await mageflow.asign(parent, success_callbacks=[cb])
    await sig.aio_run_no_wait({"x": 1})
    await manager.wait_idle()
    assert rec.of("loose") == [{"tag": "t", "mageflow_results": 5}]


async def test_several_callbacks_each_with_own_kwargs(
    manager: InMemoryTaskManager, rec: Recorder, raw: Raw
) -> None:
    @manager.task("parent", input_validator=OrderMsg)
    async def parent(msg: OrderMsg) -> int:
        return msg.order_id * 10

    callback_task(manager, rec, "cb", ExplicitFormCallback)
    cbs = [await mageflow.asign("cb", channel=ch) for ch in ("sms", "email", "push")]
    sig = await mageflow.asign(parent, success_callbacks=cbs[:2])
    await sig.add_callbacks(success=[cbs[2]])
    await sig.aio_run_no_wait(OrderMsg(order_id=4))
    await manager.wait_idle()
    got = sorted((m.channel, m.total) for m in rec.of("cb"))
    assert got == [("email", 40), ("push", 40), ("sms", 40)]
    for cb in cbs:
        assert await raw.status(cb.key) == "done"


async def test_bound_kwargs_win_over_the_message(
    manager: InMemoryTaskManager, rec: Recorder
) -> None:
    @manager.task("p", input_validator=OrderMsg)
    async def p(msg: OrderMsg) -> None:
        rec.add("p", msg)

    sig = await mageflow.asign(p, priority="high")
    await sig.aio_run_no_wait(OrderMsg(order_id=1, priority="low"))
    await manager.wait_idle()
    assert rec.of("p") == [OrderMsg(order_id=1, priority="high")]


async def test_kwargs_updated_after_dispatch_apply_at_start(
    manager: InMemoryTaskManager, rec: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    @manager.task("p", input_validator=OrderMsg)
    async def p(msg: OrderMsg) -> None:
        rec.add("p", msg)

    opened = gate(manager, monkeypatch)
    sig = await mageflow.asign(p)
    await sig.aio_run_no_wait(OrderMsg(order_id=1))
    await sig.kwargs.aupdate(priority="urgent")
    opened.set()
    await manager.wait_idle()
    assert rec.of("p") == [OrderMsg(order_id=1, priority="urgent")]


async def test_callback_chain_of_callbacks(manager: InMemoryTaskManager, rec: Recorder) -> None:
    @manager.task("step")
    async def step(msg: dict[str, Any]) -> int:
        rec.add("step", msg)
        return int(msg.get("mageflow_results", 0)) + 1

    third = await mageflow.asign("step", n=3)
    second = await mageflow.asign("step", n=2, success_callbacks=[third])
    first = await mageflow.asign("step", n=1, success_callbacks=[second])
    await first.aio_run_no_wait({})
    await manager.wait_idle()
    assert [m["n"] for m in rec.of("step")] == [1, 2, 3]
    assert rec.of("step")[2]["mageflow_results"] == 2


# -- failures and retries ----------------------------------------------------------------


async def test_failure_after_retries_fires_error_callbacks_once(
    manager: InMemoryTaskManager, rec: Recorder, raw: Raw
) -> None:
    @manager.task("flaky", input_validator=OrderMsg, retries=2)
    async def flaky(msg: OrderMsg) -> None:
        rec.add("flaky", msg)
        raise RuntimeError(f"boom {len(rec.of('flaky'))}")

    callback_task(manager, rec, "on-error", ErrorCallbackMsg)
    callback_task(manager, rec, "on-ok", ExplicitFormCallback)
    err1 = await mageflow.asign("on-error", reason="first-handler")
    err2 = await mageflow.asign("on-error", reason="second-handler", priority="overridden")
    ok = await mageflow.asign("on-ok")
    sig = await mageflow.asign(flaky, error_callbacks=[err1, err2], success_callbacks=[ok])
    await sig.aio_run_no_wait(OrderMsg(order_id=5, priority="high"))
    await manager.wait_idle()

    assert len(rec.of("flaky")) == 3
    got = sorted(rec.of("on-error"), key=lambda m: m.reason)
    assert got == [
        ErrorCallbackMsg(order_id=5, priority="high", reason="first-handler"),
        ErrorCallbackMsg(order_id=5, priority="overridden", reason="second-handler"),
    ]
    assert rec.of("on-ok") == []
    stored = await raw.hash(sig.key)
    assert stored["s"] == "failed"
    assert "RuntimeError: boom 3" in stored["err"]
    assert await raw.status(ok.key) == "skipped"  # the branch not taken (issue 11.8)
    (parent_run,) = _records(manager, "flaky")
    assert parent_run.attempts == 3
    assert parent_run.status == "failed"


async def test_non_retryable_failure_fires_error_callback_after_one_attempt(
    manager: InMemoryTaskManager, rec: Recorder
) -> None:
    @manager.task("fatal", input_validator=OrderMsg, retries=5)
    async def fatal(msg: OrderMsg) -> None:
        rec.add("fatal", msg)
        raise NonRetryableError("no")

    callback_task(manager, rec, "on-error", ErrorCallbackMsg)
    err = await mageflow.asign("on-error", reason="r")
    sig = await mageflow.asign(fatal, error_callbacks=[err])
    await sig.aio_run_no_wait(OrderMsg(order_id=1))
    await manager.wait_idle()
    assert len(rec.of("fatal")) == 1
    assert len(rec.of("on-error")) == 1


async def test_retry_then_success_fires_only_success_callbacks(
    manager: InMemoryTaskManager, rec: Recorder, raw: Raw
) -> None:
    @manager.task("flaky", input_validator=OrderMsg, retries=3)
    async def flaky(msg: OrderMsg) -> int:
        rec.add("flaky", msg)
        if len(rec.of("flaky")) < 3:
            raise RuntimeError("not yet")
        return 99

    callback_task(manager, rec, "on-error", ErrorCallbackMsg)
    callback_task(manager, rec, "on-ok", ExplicitFormCallback)
    err = await mageflow.asign("on-error", reason="r")
    ok = await mageflow.asign("on-ok")
    sig = await mageflow.asign(flaky, error_callbacks=[err], success_callbacks=[ok])
    await sig.aio_run_no_wait(OrderMsg(order_id=1))
    await manager.wait_idle()
    assert len(rec.of("flaky")) == 3
    assert rec.of("on-error") == []
    assert [m.total for m in rec.of("on-ok")] == [99]
    assert await raw.status(sig.key) == "done"
    assert await raw.status(err.key) == "skipped"  # the branch not taken (issue 11.8)


# -- suspend / resume ----------------------------------------------------------------------


async def test_run_arriving_for_suspended_signature_is_parked_and_replayed_once(
    manager: InMemoryTaskManager, rec: Recorder, raw: Raw
) -> None:
    @manager.task("p", input_validator=OrderMsg)
    async def p(msg: OrderMsg) -> int:
        rec.add("p", msg)
        return msg.order_id

    callback_task(manager, rec, "on-ok", ExplicitFormCallback)
    ok = await mageflow.asign("on-ok")
    sig = await mageflow.asign(p, success_callbacks=[ok])
    await sig.suspend()
    await sig.aio_run_no_wait(OrderMsg(order_id=11, priority="mid"))
    await manager.wait_idle()
    assert rec.of("p") == []
    assert manager.runs == {}
    assert await raw.status(sig.key) == "suspended"

    # Repeated and concurrent resumes still execute the parked run exactly once.
    # (a resume that lands after the replayed run finished is refused: done is terminal)
    results = await asyncio.gather(
        sig.resume(), mageflow.resume(sig.key), mageflow.resume(sig.key), return_exceptions=True
    )
    assert all(r is None or isinstance(r, mageflow.InvalidTransitionError) for r in results)
    await manager.wait_idle()
    with pytest.raises(mageflow.InvalidTransitionError, match="'done'"):
        await sig.resume()
    assert rec.of("p") == [OrderMsg(order_id=11, priority="mid")]
    assert [m.total for m in rec.of("on-ok")] == [11]
    assert await raw.status(sig.key) == "done"


async def test_suspend_after_dispatch_parks_the_arriving_run(
    manager: InMemoryTaskManager, rec: Recorder, raw: Raw, monkeypatch: pytest.MonkeyPatch
) -> None:
    @manager.task("p", input_validator=OrderMsg)
    async def p(msg: OrderMsg) -> int:
        rec.add("p", msg)
        return 1

    opened = gate(manager, monkeypatch)
    sig = await mageflow.asign(p)
    await sig.aio_run_no_wait(OrderMsg(order_id=3))
    await mageflow.pause(sig.key)
    opened.set()
    await manager.wait_idle()
    assert rec.of("p") == []
    (parked,) = manager.runs.values()
    assert parked.status == "skipped:parked"
    assert await raw.status(sig.key) == "suspended"
    assert "pm" in await raw.hash(sig.key)

    await mageflow.resume(sig.key)
    await manager.wait_idle()
    assert rec.of("p") == [OrderMsg(order_id=3)]
    assert await raw.status(sig.key) == "done"
    assert len(manager.runs) == 2


async def test_suspend_while_running_lets_the_attempt_finish(
    manager: InMemoryTaskManager, rec: Recorder, raw: Raw
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    @manager.task("p", input_validator=OrderMsg)
    async def p(msg: OrderMsg) -> int:
        rec.add("p", msg)
        started.set()
        await release.wait()
        return 1

    callback_task(manager, rec, "on-ok", ExplicitFormCallback)
    ok = await mageflow.asign("on-ok")
    sig = await mageflow.asign(p, success_callbacks=[ok])
    await sig.aio_run_no_wait(OrderMsg(order_id=3))
    await asyncio.wait_for(started.wait(), 5)
    await sig.suspend()
    assert await raw.status(sig.key) == "suspended"
    release.set()
    await manager.wait_idle()
    assert await raw.status(sig.key) == "done"
    assert len(rec.of("p")) == 1
    assert len(rec.of("on-ok")) == 1


async def test_suspended_callback_is_parked_until_resumed(
    manager: InMemoryTaskManager, rec: Recorder, raw: Raw
) -> None:
    @manager.task("p")
    async def p(msg: dict[str, Any]) -> int:
        return 8

    callback_task(manager, rec, "on-ok", ExplicitFormCallback)
    ok = await mageflow.asign("on-ok", channel="fax")
    await ok.suspend()
    sig = await mageflow.asign(p, success_callbacks=[ok])
    await sig.aio_run_no_wait({})
    await manager.wait_idle()
    assert rec.of("on-ok") == []
    assert await raw.status(ok.key) == "suspended"
    await ok.resume()
    await manager.wait_idle()
    assert [(m.total, m.channel) for m in rec.of("on-ok")] == [(8, "fax")]


# -- interrupt -------------------------------------------------------------------------------


async def test_interrupt_cancels_the_running_task_and_resume_redispatches(
    manager: InMemoryTaskManager, rec: Recorder, raw: Raw
) -> None:
    started = asyncio.Event()
    hang = asyncio.Event()

    @manager.task("long", input_validator=OrderMsg)
    async def long(msg: OrderMsg) -> int:
        rec.add("long", msg)
        started.set()
        if len(rec.of("long")) == 1:
            await hang.wait()  # never set: only cancellation ends the first attempt
        return msg.order_id

    callback_task(manager, rec, "on-ok", ExplicitFormCallback)
    callback_task(manager, rec, "on-error", ErrorCallbackMsg)
    ok = await mageflow.asign("on-ok")
    err = await mageflow.asign("on-error", reason="x")
    sig = await mageflow.asign(long, success_callbacks=[ok], error_callbacks=[err])
    await sig.aio_run_no_wait(OrderMsg(order_id=21))
    await asyncio.wait_for(started.wait(), 5)

    await sig.interrupt()
    assert sig.status == SignatureStatus.INTERRUPTED
    await manager.wait_idle()
    (first,) = manager.runs.values()
    assert first.status == "cancelled"
    assert await raw.status(sig.key) == "interrupted"
    assert rec.of("on-ok") == []
    assert rec.of("on-error") == []

    await sig.resume()
    await manager.wait_idle()
    assert rec.of("long") == [OrderMsg(order_id=21), OrderMsg(order_id=21)]
    assert [m.total for m in rec.of("on-ok")] == [21]
    assert rec.of("on-error") == []
    assert await raw.status(sig.key) == "done"


async def test_pause_interrupt_by_key_cancels(
    manager: InMemoryTaskManager, rec: Recorder, raw: Raw
) -> None:
    started = asyncio.Event()

    @manager.task("long")
    async def long(msg: dict[str, Any]) -> None:
        started.set()
        await asyncio.Event().wait()

    sig = await mageflow.asign(long)
    await sig.aio_run_no_wait({})
    await asyncio.wait_for(started.wait(), 5)
    await mageflow.pause(sig.key, mageflow.PauseActionTypes.INTERRUPT)
    await manager.wait_idle()
    assert [r.status for r in manager.runs.values()] == ["cancelled"]
    assert await raw.status(sig.key) == "interrupted"


# -- redelivery --------------------------------------------------------------------------------


async def _redeliver(
    runtime: MageflowRuntime, manager: InMemoryTaskManager, record: RunRecord, rec: Recorder
) -> Any:
    async def body(arg: Any, sig: Any) -> Any:
        rec.add("redelivered-body", arg)
        return None

    request = RunRequest(
        signature_key=record.signature_key,
        dispatch_id=record.dispatch_id,
        run_id=record.run_id,
        payload=record.input,
        body=body,
        is_final_failure=lambda exc: True,
        task_name=record.task_name,
    )
    return await runtime.execute_run(request)


async def test_redelivery_of_a_finished_run_runs_nothing_and_callbacks_skip(
    runtime: MageflowRuntime, manager: InMemoryTaskManager, rec: Recorder, raw: Raw
) -> None:
    @manager.task("p", input_validator=OrderMsg)
    async def p(msg: OrderMsg) -> int:
        rec.add("p", msg)
        return 5

    callback_task(manager, rec, "on-ok", ExplicitFormCallback)
    oks = [await mageflow.asign("on-ok", channel=c) for c in ("a", "b")]
    sig = await mageflow.asign(p, success_callbacks=oks)
    await sig.aio_run_no_wait(OrderMsg(order_id=1))
    await manager.wait_idle()
    (record,) = _records(manager, "p")
    before = await raw.snapshot()

    for _ in range(3):
        outcome = await _redeliver(runtime, manager, record, rec)
        assert outcome.ran is False
        assert outcome.reason == "drained"
        await manager.wait_idle()

    assert rec.of("redelivered-body") == []
    assert len(rec.of("p")) == 1
    assert sorted(m.channel for m in rec.of("on-ok")) == ["a", "b"]
    cb_runs = _records(manager, "on-ok")
    assert len(cb_runs) == 2 + 3 * 2
    skipped = [r.status for r in cb_runs if r.status.startswith("skipped:")]
    assert len(skipped) == 6
    assert await raw.snapshot() == before


async def test_redelivery_of_a_failed_run_fires_no_second_error_callback(
    runtime: MageflowRuntime, manager: InMemoryTaskManager, rec: Recorder
) -> None:
    @manager.task("p", input_validator=OrderMsg)
    async def p(msg: OrderMsg) -> int:
        raise NonRetryableError("bad")

    callback_task(manager, rec, "on-error", ErrorCallbackMsg)
    err = await mageflow.asign("on-error", reason="r")
    sig = await mageflow.asign(p, error_callbacks=[err])
    await sig.aio_run_no_wait(OrderMsg(order_id=1))
    await manager.wait_idle()
    (record,) = _records(manager, "p")
    outcome = await _redeliver(runtime, manager, record, rec)
    assert outcome.reason == "drained"
    await manager.wait_idle()
    assert len(rec.of("on-error")) == 1
    assert len(_records(manager, "on-error")) == 2


async def test_duplicate_delivery_of_a_dispatch_runs_the_body_once(
    runtime: MageflowRuntime, manager: InMemoryTaskManager, rec: Recorder, raw: Raw
) -> None:
    sig = await mageflow.asign("p", a=1)
    await runtime.store.dispatch(sig.key, {"a": 1}, "d-1", "")

    async def body(arg: Any, s: Any) -> int:
        rec.add("body", arg)
        await asyncio.sleep(0)
        return 1

    requests = [
        RunRequest(
            signature_key=sig.key,
            dispatch_id="d-1",
            run_id=f"run-{i}",
            payload={"a": 1},
            body=body,
            is_final_failure=lambda e: True,
        )
        for i in range(20)
    ]
    outcomes = await asyncio.gather(*(runtime.execute_run(r) for r in requests))
    assert sum(o.ran for o in outcomes) == 1
    assert len(rec.of("body")) == 1
    assert await raw.status(sig.key) == "done"


async def test_wait_for_done_with_polling(manager: InMemoryTaskManager, raw: Raw) -> None:
    @manager.task("p")
    async def p(msg: dict[str, Any]) -> int:
        return 1

    sig = await mageflow.asign(p)
    await sig.aio_run_no_wait({})

    async def done() -> bool:
        return await raw.status(sig.key) == "done"

    await eventually(done, what="signature done")


async def test_removing_a_running_signature_lets_the_run_end_quietly(
    manager: InMemoryTaskManager, rec: Recorder
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    @manager.task("p")
    async def p(msg: dict[str, Any]) -> int:
        started.set()
        await release.wait()
        return 1

    callback_task(manager, rec, "on-ok", ExplicitFormCallback)
    ok = await mageflow.asign("on-ok")
    sig = await mageflow.asign(p, success_callbacks=[ok])
    await sig.aio_run_no_wait({})
    await asyncio.wait_for(started.wait(), 5)
    await sig.remove()
    release.set()
    await manager.wait_idle()
    assert await mageflow.load_signature(sig.key) is None
    assert await mageflow.load_signature(ok.key) is None
    assert rec.of("on-ok") == []
    (record,) = manager.runs.values()
    assert record.status == "succeeded"


async def test_suspend_then_resume_while_running_does_not_replay(
    manager: InMemoryTaskManager, rec: Recorder, raw: Raw
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    @manager.task("p")
    async def p(msg: dict[str, Any]) -> int:
        rec.add("p", msg)
        started.set()
        await release.wait()
        return 1

    sig = await mageflow.asign(p)
    await sig.aio_run_no_wait({"n": 1})
    await asyncio.wait_for(started.wait(), 5)
    await sig.suspend()
    await sig.resume()
    assert await raw.status(sig.key) == "active"
    release.set()
    await manager.wait_idle()
    assert rec.of("p") == [{"n": 1}]
    assert len(manager.runs) == 1
    assert await raw.status(sig.key) == "done"


async def test_interrupt_of_a_suspended_running_task_cancels_it(
    manager: InMemoryTaskManager, rec: Recorder, raw: Raw
) -> None:
    started = asyncio.Event()

    @manager.task("p")
    async def p(msg: dict[str, Any]) -> int:
        rec.add("p", msg)
        started.set()
        if len(rec.of("p")) == 1:
            await asyncio.Event().wait()
        return 1

    sig = await mageflow.asign(p)
    await sig.aio_run_no_wait({"n": 1})
    await asyncio.wait_for(started.wait(), 5)
    await sig.suspend()
    await sig.interrupt()
    await manager.wait_idle()
    assert [r.status for r in manager.runs.values()] == ["cancelled"]
    assert await raw.status(sig.key) == "interrupted"
    await sig.resume()
    await manager.wait_idle()
    assert rec.of("p") == [{"n": 1}, {"n": 1}]
    assert await raw.status(sig.key) == "done"


async def test_failed_attempt_while_suspended_parks_the_retry(
    manager: InMemoryTaskManager, rec: Recorder, raw: Raw
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    @manager.task("p", retries=2)
    async def p(msg: dict[str, Any]) -> int:
        rec.add("p", msg)
        if len(rec.of("p")) == 1:
            started.set()
            await release.wait()
            raise RuntimeError("first attempt fails")
        return 1

    sig = await mageflow.asign(p)
    await sig.aio_run_no_wait({"n": 1})
    await asyncio.wait_for(started.wait(), 5)
    await sig.suspend()
    release.set()
    await manager.wait_idle()
    assert rec.of("p") == [{"n": 1}]  # the retry arrived while suspended: parked
    assert await raw.status(sig.key) == "suspended"
    await sig.resume()
    await manager.wait_idle()
    assert rec.of("p") == [{"n": 1}, {"n": 1}]
    assert await raw.status(sig.key) == "done"
