"""The reconciler's decision table, every cell, on the in-memory engine and a real Redis.

Claims (a dispatch claimed, its run not begun) and begun runs (``active``)
that went quiet are settled by what ``run_status`` says; see the table in
docs/lifecycle.md. ``older_than=0`` makes everything due at once.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import mageflow
import pytest
from mageflow import (
    DispatchPendingError,
    DispatchRefusedError,
    MageflowConfig,
    MageflowRuntime,
    MageflowValidationError,
    SwarmConfig,
)
from mageflow.engine import (
    CancelRequest,
    DispatchRequest,
    DispatchResult,
    RunState,
    RunStatusRequest,
    RunStatusResult,
)
from mageflow.inmemory import InMemoryTaskManager
from pydantic import BaseModel

from tests.integration._helpers import Raw, fast_config

NOW = timedelta(0)
WINDOW = timedelta(milliseconds=400)
"""``reconcile_unknown_window`` here: how long a run the engine named may read unknown"""


class Item(BaseModel):
    n: int = 0


class Engine(InMemoryTaskManager):
    """The in-memory engine, with a switch for a dispatch whose outcome is unknown."""

    def __init__(self) -> None:
        super().__init__()
        self.lose_next = 0
        self.status_calls = 0
        self.unreachable = False
        self.lagging: set[str] = set()
        """runs its status query does not know yet, as a lagging read side"""

    async def dispatch(self, request: DispatchRequest) -> DispatchResult:
        if self.lose_next > 0:
            self.lose_next -= 1
            raise TimeoutError("the engine did not answer in time")
        return await super().dispatch(request)

    async def run_status(self, request: RunStatusRequest) -> RunStatusResult:
        self.status_calls += 1
        if self.unreachable:
            raise ConnectionError("engine down")
        result = await super().run_status(request)
        late = {r: RunState.UNKNOWN for r in request.run_ids if r in self.lagging}
        return RunStatusResult(states={**result.states, **late})


@pytest.fixture
def config(key_prefix: str) -> MageflowConfig:
    return fast_config(key_prefix, reconcile_unknown_window=WINDOW)


@pytest.fixture
def manager() -> InMemoryTaskManager:
    return Engine()


@pytest.fixture
def engine(manager: InMemoryTaskManager) -> Engine:
    assert isinstance(manager, Engine)
    return manager


class Seen:
    def __init__(self) -> None:
        self.calls: dict[str, list[Any]] = {"work": [], "on_error": [], "on_ok": [], "block": []}
        self.gate = asyncio.Event()


def register(engine: Engine) -> Seen:
    seen = Seen()

    @engine.task("work", input_validator=Item)
    async def work(msg: Item) -> int:
        seen.calls["work"].append(msg.n)
        return msg.n

    @engine.task("block", input_validator=Item)
    async def block(msg: Item) -> int:
        seen.calls["block"].append(msg.n)
        await seen.gate.wait()
        return msg.n

    @engine.task("on_error")
    async def on_error(msg: dict[str, Any]) -> None:
        seen.calls["on_error"].append(msg)

    @engine.task("on_ok")
    async def on_ok(msg: dict[str, Any]) -> None:
        seen.calls["on_ok"].append(msg)

    return seen


async def error_of(raw: Raw, key: str) -> str:
    return str(json.loads((await raw.hash(key))["err"]))


async def indexes(rt: MageflowRuntime) -> tuple[int, int]:
    client = rt.store.client
    return await client.zcard(rt.store.keys.pending), await client.zcard(rt.store.keys.active)


async def held_claim(engine: Engine, **options: Any) -> tuple[str, str]:
    """A signature with a claimed, sent run that the engine holds queued: (key, run id)."""
    on_error = await mageflow.asign("on_error")
    engine.hold = True
    sig = await mageflow.asign("work", error_callbacks=[on_error])
    await sig.aio_run_no_wait(Item(n=1), **options)
    (run_id,) = [r for r, rec in engine.runs.items() if rec.signature_key == sig.key]
    return sig.key, run_id


async def begun_run(engine: Engine, raw: Raw, seen: Seen) -> tuple[str, str]:
    """A signature whose run began and then went silent (its worker lost): (key, run id)."""
    on_error = await mageflow.asign("on_error")
    sig = await mageflow.asign("block", error_callbacks=[on_error])
    await sig.aio_run_no_wait(Item(n=2))
    for _ in range(200):
        if await raw.status(sig.key) == "active":
            break
        await asyncio.sleep(0.01)
    (run_id,) = [r for r, rec in engine.runs.items() if rec.signature_key == sig.key]
    # the worker dies: nothing is recorded, the run is left to the engine
    engine._running[run_id].cancel()
    await engine.wait_idle()
    assert await raw.status(sig.key) == "active"
    return sig.key, run_id


# -- claims: a dispatch whose run never began -------------------------------------------------


@pytest.mark.parametrize("state", ["queued", "running"])
async def test_claim_queued_or_running_is_left(
    runtime: MageflowRuntime, engine: Engine, raw: Raw, state: str
) -> None:
    register(engine)
    key, run_id = await held_claim(engine)
    engine.runs[run_id].status = state
    before = await raw.hash(key)
    report = await runtime.reconcile(NOW)
    assert (report.left, report.resent, report.failed, report.canceled) == (1, 0, 0, 0)
    assert await raw.hash(key) == before
    assert await indexes(runtime) == (1, 0)


@pytest.mark.parametrize(
    ("state", "words"), [("failed", "failed in the engine"), ("timed_out", "timed out")]
)
async def test_claim_failed_or_timed_out_in_the_engine_fails_once(
    runtime: MageflowRuntime, engine: Engine, raw: Raw, state: str, words: str
) -> None:
    seen = register(engine)
    key, run_id = await held_claim(engine)
    engine.runs[run_id].status = state
    engine.hold = False
    report = await runtime.reconcile(NOW)
    assert report.failed == 1
    await engine.wait_idle()
    assert await raw.status(key) == "failed"
    assert words in await error_of(raw, key)
    assert run_id in await error_of(raw, key)
    assert len(seen.calls["on_error"]) == 1
    # a second sweep, and a late run, change nothing
    assert (await runtime.reconcile(NOW)).examined == 0
    assert len(seen.calls["on_error"]) == 1
    assert await indexes(runtime) == (0, 0)


async def test_claim_cancelled_in_the_engine_is_canceled_without_callbacks(
    runtime: MageflowRuntime, engine: Engine, raw: Raw
) -> None:
    seen = register(engine)
    key, run_id = await held_claim(engine)
    engine.runs[run_id].status = "cancelled"
    engine.hold = False
    report = await runtime.reconcile(NOW)
    assert report.canceled == 1
    await engine.wait_idle()
    assert await raw.status(key) == "canceled"
    assert "cancelled in the engine" in await error_of(raw, key)
    assert seen.calls["on_error"] == [] and seen.calls["work"] == []
    assert await indexes(runtime) == (0, 0)
    # no re-send: a cancellation in the engine is never undone
    assert (await runtime.reconcile(NOW)).examined == 0
    assert len(engine.runs) == 1


@pytest.mark.parametrize("state", ["unknown", "completed"])
async def test_claim_the_engine_lost_is_resent_with_the_callers_options(
    runtime: MageflowRuntime, engine: Engine, raw: Raw, state: str
) -> None:
    seen = register(engine)
    key, run_id = await held_claim(engine, priority=3, additional_metadata={"customer": "c-1"})
    if state == "unknown":
        engine.forget(run_id)
    else:
        engine.runs[run_id].status = "skipped:stale"
    engine.hold = False
    report = await runtime.reconcile(NOW)
    assert report.resent == 1
    await engine.wait_idle()
    assert seen.calls["work"] == [1]
    (resent,) = [r for r in engine.runs.values() if r.run_id != run_id]
    assert resent.options == {"priority": 3, "additional_metadata": {"customer": "c-1"}}
    assert await raw.status(key) == "done"
    assert await indexes(runtime) == (0, 0)


async def test_claim_the_engine_never_knows_fails_after_max_resends(
    runtime: MageflowRuntime, engine: Engine, raw: Raw
) -> None:
    seen = register(engine)
    key, _ = await held_claim(engine)
    limit = runtime.config.reconcile_max_resends
    for _ in range(limit):
        for rid in [r for r, rec in engine.runs.items() if rec.signature_key == key]:
            engine.forget(rid)
        assert (await runtime.reconcile(NOW)).resent == 1
    for rid in [r for r, rec in engine.runs.items() if rec.signature_key == key]:
        engine.forget(rid)
    engine.hold = False
    # the engine named runs it does not know: its read side may lag, so the
    # last re-send is not given up on before the window has passed
    report = await runtime.reconcile(NOW)
    assert (report.left, report.resent, report.failed) == (1, 0, 0)
    await asyncio.sleep(WINDOW.total_seconds())
    report = await runtime.reconcile(NOW)
    assert (report.resent, report.failed) == (0, 1)
    await engine.wait_idle()
    assert await raw.status(key) == "failed"
    error = await error_of(raw, key)
    assert f"after {limit} re-send(s)" in error and key in error
    assert len(seen.calls["on_error"]) == 1
    assert seen.calls["work"] == []
    assert await indexes(runtime) == (0, 0)


async def test_claim_whose_engine_cannot_answer_is_left(
    runtime: MageflowRuntime, engine: Engine, raw: Raw
) -> None:
    register(engine)
    key, run_id = await held_claim(engine)
    engine.forget(run_id)
    engine.unreachable = True
    before = await raw.hash(key)
    report = await runtime.reconcile(NOW)
    assert (report.left, report.resent, report.failed) == (1, 0, 0)
    assert await raw.hash(key) == before


async def test_suspended_claim_is_resent_when_its_run_is_gone(
    runtime: MageflowRuntime, engine: Engine, raw: Raw
) -> None:
    seen = register(engine)
    key, run_id = await held_claim(engine)
    await mageflow.pause(key)
    engine.forget(run_id)
    engine.hold = False
    assert (await runtime.reconcile(NOW)).resent == 1
    await engine.wait_idle()
    # the re-sent run arrives and is parked, not run, and not failed
    assert await raw.status(key) == "suspended"
    assert seen.calls["work"] == []


# -- dispatch errors: refused or pending ------------------------------------------------------


async def test_dispatch_refused_takes_the_claim_back(
    runtime: MageflowRuntime, engine: Engine, raw: Raw
) -> None:
    sig = await mageflow.asign("nobody-serves-this")
    before = await raw.snapshot()
    with pytest.raises(DispatchRefusedError, match="nobody-serves-this"):
        await sig.aio_run_no_wait({}, priority=2)
    assert await raw.snapshot() == before
    assert (await runtime.reconcile(NOW)).examined == 0


async def test_dispatch_outcome_unknown_runs_once_with_the_callers_options(
    runtime: MageflowRuntime, engine: Engine, raw: Raw
) -> None:
    seen = register(engine)
    sig = await mageflow.asign("work")
    engine.lose_next = 1
    with pytest.raises(DispatchPendingError, match="will run"):
        await sig.aio_run_no_wait(Item(n=5), priority=1, additional_metadata={"a": "b"})
    assert seen.calls["work"] == []
    report = await runtime.reconcile(NOW)
    assert report.resent == 1
    await engine.wait_idle()
    assert seen.calls["work"] == [5]
    (run,) = engine.runs.values()
    assert run.options == {"priority": 1, "additional_metadata": {"a": "b"}}
    assert await raw.status(sig.key) == "done"
    assert (await runtime.reconcile(NOW)).examined == 0


async def test_resume_replays_a_parked_run_with_the_callers_options(
    runtime: MageflowRuntime, engine: Engine, raw: Raw
) -> None:
    seen = register(engine)
    sig = await mageflow.asign("work")
    await mageflow.pause(sig.key)
    await sig.aio_run_no_wait(Item(n=8), priority=3, additional_metadata={"k": "v"})
    assert engine.runs == {}
    await mageflow.resume(sig.key)
    await engine.wait_idle()
    assert seen.calls["work"] == [8]
    (run,) = engine.runs.values()
    assert run.options == {"priority": 3, "additional_metadata": {"k": "v"}}


# -- begun runs: active, then silent --------------------------------------------------------------


async def test_begun_run_still_running_is_left(
    runtime: MageflowRuntime, engine: Engine, raw: Raw
) -> None:
    seen = register(engine)
    key, run_id = await begun_run(engine, raw, seen)
    engine.runs[run_id].status = "running"
    report = await runtime.reconcile(NOW)
    assert (report.left, report.failed) == (1, 0)
    assert await raw.status(key) == "active"
    assert await indexes(runtime) == (0, 1)


@pytest.mark.parametrize(
    ("state", "words"),
    [
        ("failed", "failed in the engine"),
        ("timed_out", "timed out in the engine"),
        ("succeeded", "completed in the engine but its outcome never reached MageFlow"),
    ],
)
async def test_begun_run_ended_in_the_engine_fails_once(
    runtime: MageflowRuntime, engine: Engine, raw: Raw, state: str, words: str
) -> None:
    seen = register(engine)
    key, run_id = await begun_run(engine, raw, seen)
    engine.runs[run_id].status = state
    report = await runtime.reconcile(NOW)
    assert report.failed == 1
    await engine.wait_idle()
    assert await raw.status(key) == "failed"
    assert words in await error_of(raw, key)
    assert len(seen.calls["on_error"]) == 1
    # a begun run is never sent again: its body may have run
    assert seen.calls["block"] == [2]
    assert await indexes(runtime) == (0, 0)
    assert (await runtime.reconcile(NOW)).examined == 0


async def test_begun_run_the_engine_does_not_know_fails_after_the_window(
    runtime: MageflowRuntime, engine: Engine, raw: Raw
) -> None:
    seen = register(engine)
    key, run_id = await begun_run(engine, raw, seen)
    engine.forget(run_id)
    # an engine may lag behind a run it just started: however many looks fit
    # in the window (more than reconcile_max_resends), none re-sends or fails
    looks = runtime.config.reconcile_max_resends + 3
    for _ in range(looks):
        report = await runtime.reconcile(NOW)
        assert (report.left, report.failed, report.resent) == (1, 0, 0)
        assert await raw.status(key) == "active"
    await asyncio.sleep(WINDOW.total_seconds())
    report = await runtime.reconcile(NOW)
    assert report.failed == 1
    await engine.wait_idle()
    assert await raw.status(key) == "failed"
    error = await error_of(raw, key)
    assert "the engine does not know it" in error and "reconcile_unknown_window" in error
    assert "not re-sent" in error
    assert len(seen.calls["on_error"]) == 1
    assert seen.calls["block"] == [2]
    assert await indexes(runtime) == (0, 0)


async def test_begun_run_the_engine_reads_late_completes_once(
    runtime: MageflowRuntime, engine: Engine, raw: Raw
) -> None:
    """The long chaos run's lost callback: a run that began reads unknown for a
    while (Hatchet's REST lags), then running; it must finish, not fail."""
    seen = register(engine)
    on_ok = await mageflow.asign("on_ok")
    sig = await mageflow.asign("block", success_callbacks=[on_ok])
    await sig.aio_run_no_wait(Item(n=4))
    for _ in range(200):
        if await raw.status(sig.key) == "active":
            break
        await asyncio.sleep(0.01)
    (run_id,) = [r for r, rec in engine.runs.items() if rec.signature_key == sig.key]
    engine.lagging.add(run_id)
    for _ in range(runtime.config.reconcile_max_resends + 3):
        report = await runtime.reconcile(NOW)
        assert (report.left, report.failed, report.resent) == (1, 0, 0)
    assert "ud" in await raw.hash(sig.key)
    # the read side catches up: the doubt ends, and its clock with it
    engine.lagging.clear()
    assert (await runtime.reconcile(NOW)).left == 1
    assert "ud" not in await raw.hash(sig.key)
    # unknown again later: a new doubt with a whole window of its own
    engine.lagging.add(run_id)
    await asyncio.sleep(WINDOW.total_seconds())
    assert (await runtime.reconcile(NOW)).left == 1
    engine.lagging.clear()
    seen.gate.set()
    await engine.wait_idle()
    assert await raw.status(sig.key) == "done"
    assert seen.calls["block"] == [4]
    assert len(seen.calls["on_ok"]) == 1
    assert await indexes(runtime) == (0, 0)


async def test_doubt_settled_by_reconcilers_at_once_fails_once(
    runtime: MageflowRuntime, engine: Engine, raw: Raw
) -> None:
    seen = register(engine)
    key, run_id = await begun_run(engine, raw, seen)
    engine.forget(run_id)
    assert (await runtime.reconcile(NOW)).left == 1
    await asyncio.sleep(WINDOW.total_seconds())
    reports = await asyncio.gather(*(runtime.reconcile(NOW) for _ in range(4)))
    assert sum(r.failed for r in reports) == 1
    await engine.wait_idle()
    assert await raw.status(key) == "failed"
    assert len(seen.calls["on_error"]) == 1


async def test_claim_whose_run_reads_late_is_not_given_up_on_within_the_window(
    runtime: MageflowRuntime, engine: Engine, raw: Raw
) -> None:
    seen = register(engine)
    key, _ = await held_claim(engine)
    limit = runtime.config.reconcile_max_resends
    for _ in range(limit + 3):
        engine.lagging |= {r for r, rec in engine.runs.items() if rec.signature_key == key}
        report = await runtime.reconcile(NOW)
        assert report.failed == 0
    assert await raw.status(key) == "pending"
    # the runs were there all along: one of them runs it, the others skip
    engine.lagging.clear()
    engine.release()
    await engine.wait_idle()
    assert await raw.status(key) == "done"
    assert seen.calls["work"] == [1]
    assert await indexes(runtime) == (0, 0)


async def test_begun_run_cancelled_in_the_engine_is_canceled(
    runtime: MageflowRuntime, engine: Engine, raw: Raw
) -> None:
    seen = register(engine)
    key, run_id = await begun_run(engine, raw, seen)
    engine.runs[run_id].status = "cancelled"
    report = await runtime.reconcile(NOW)
    assert report.canceled == 1
    assert await raw.status(key) == "canceled"
    assert seen.calls["on_error"] == []
    assert await indexes(runtime) == (0, 0)


# -- containers: a member settled by the reconciler -----------------------------------------------


async def test_chain_step_cancelled_in_the_engine_fails_the_chain(
    runtime: MageflowRuntime, engine: Engine, raw: Raw
) -> None:
    seen = register(engine)
    on_error = await mageflow.asign("on_error")
    engine.hold = True
    first = await mageflow.asign("work")
    second = await mageflow.asign("work")
    chain = await mageflow.achain([first, second], error=[on_error])
    await chain.aio_run_no_wait(Item(n=7))
    (run_id,) = list(engine.runs)
    engine.runs[run_id].status = "cancelled"
    engine.hold = False
    await runtime.reconcile(NOW)
    await engine.wait_idle()
    assert await raw.status(first.key) == "canceled"
    assert await raw.status(chain.key) == "failed"
    assert await raw.status(second.key) == "skipped"  # never reached
    assert len(seen.calls["on_error"]) == 1
    assert seen.calls["work"] == []


async def test_swarm_member_failed_in_the_engine_lets_the_swarm_settle(
    runtime: MageflowRuntime, engine: Engine, raw: Raw
) -> None:
    seen = register(engine)
    on_ok = await mageflow.asign("on_ok")
    engine.hold = True
    a = await mageflow.asign("work", n=1)
    b = await mageflow.asign("work", n=2)
    swarm = await mageflow.aswarm(
        [a, b], success_callbacks=[on_ok], config=SwarmConfig(max_concurrency=2)
    )
    await swarm.aio_run_no_wait({})
    await swarm.close_swarm()
    runs = {rec.signature_key: r for r, rec in engine.runs.items()}
    engine.runs[runs[a.key]].status = "cancelled"
    engine.release()
    await engine.wait_idle()
    assert await raw.status(b.key) == "done"
    assert await raw.status(swarm.key) == "active"
    await runtime.reconcile(NOW)
    await engine.wait_idle()
    assert await raw.status(a.key) == "canceled"
    assert await raw.status(swarm.key) == "done"
    assert len(seen.calls["on_ok"]) == 1


# -- callbacks whose input does not fit --------------------------------------------------------


class Needs(BaseModel):
    customer_id: int


async def test_unfit_error_callback_fails_at_once_naming_the_field(
    runtime: MageflowRuntime, engine: Engine, raw: Raw
) -> None:
    seen = register(engine)

    @engine.task("needs", input_validator=Needs)
    async def needs(msg: Needs) -> None:
        seen.calls.setdefault("needs", []).append(msg)

    @engine.task("boom", input_validator=Item)
    async def boom(msg: Item) -> None:
        raise mageflow.NonRetryable("no")

    its_error = await mageflow.asign("on_error")
    callback = await mageflow.asign("needs", error_callbacks=[its_error])
    sig = await mageflow.asign("boom", error_callbacks=[callback])
    await sig.aio_run_no_wait(Item(n=1))
    await engine.wait_idle()
    assert await raw.status(sig.key) == "failed"
    assert await raw.status(callback.key) == "failed"
    assert "customer_id" in await error_of(raw, callback.key)
    assert len(seen.calls["on_error"]) == 1
    assert "needs" not in seen.calls
    assert await indexes(runtime) == (0, 0)


async def test_unfit_chain_step_fails_at_once_and_fails_its_chain(
    runtime: MageflowRuntime, engine: Engine, raw: Raw
) -> None:
    seen = register(engine)

    @engine.task("needs", input_validator=Needs)
    async def needs(msg: Needs) -> None:
        seen.calls.setdefault("needs", []).append(msg)

    on_error = await mageflow.asign("on_error")
    first = await mageflow.asign("work")
    second = await mageflow.asign("needs")
    chain = await mageflow.achain([first, second], error=[on_error])
    await chain.aio_run_no_wait(Item(n=1))
    await engine.wait_idle()
    assert await raw.status(first.key) == "done"
    assert await raw.status(second.key) == "failed"
    assert "customer_id" in await error_of(raw, second.key)
    assert await raw.status(chain.key) == "failed"
    assert len(seen.calls["on_error"]) == 1
    assert "needs" not in seen.calls
    assert await indexes(runtime) == (0, 0)


# -- several reconcilers, cost ------------------------------------------------------------------


async def test_reconcilers_racing_settle_each_signature_once(
    runtime: MageflowRuntime, engine: Engine, raw: Raw
) -> None:
    seen = register(engine)
    keys = []
    for _ in range(5):
        key, run_id = await held_claim(engine)
        engine.runs[run_id].status = "failed"
        keys.append(key)
    engine.hold = False
    other = MageflowRuntime(runtime.store, engine)
    reports = await asyncio.gather(*(rt.reconcile(NOW) for rt in (runtime, other, runtime)))
    await engine.wait_idle()
    assert sum(r.failed for r in reports) == 5
    assert len(seen.calls["on_error"]) == 5
    for key in keys:
        assert await raw.status(key) == "failed"


async def test_a_sweep_never_visits_settled_signatures(
    runtime: MageflowRuntime, engine: Engine
) -> None:
    register(engine)
    for i in range(30):
        await (await mageflow.asign("work")).aio_run_no_wait(Item(n=i))
    await engine.wait_idle()
    assert await indexes(runtime) == (0, 0)
    report = await runtime.reconcile(NOW)
    assert (report.examined, report.engine_calls) == (0, 0)


# -- tasks that can never report back --------------------------------------------------------------


async def test_fire_and_forget_has_no_callbacks_and_no_claim(
    runtime: MageflowRuntime, engine: Engine, raw: Raw
) -> None:
    seen = register(engine)
    cb = await mageflow.asign("on_ok")
    with pytest.raises(MageflowValidationError, match="success_callbacks"):
        await mageflow.asign("work", fire_and_forget=True, success_callbacks=[cb])
    sig = await mageflow.asign("work", fire_and_forget=True)
    await sig.aio_run_no_wait(Item(n=4))
    await engine.wait_idle()
    assert seen.calls["work"] == [4]
    assert await indexes(runtime) == (0, 0)


async def test_cancel_of_a_claim_cancels_its_queued_engine_run_too(
    runtime: MageflowRuntime, engine: Engine, raw: Raw, monkeypatch: pytest.MonkeyPatch
) -> None:
    cancelled: list[str] = []

    async def cancel(request: CancelRequest) -> None:
        cancelled.append(request.run_id)

    monkeypatch.setattr(engine, "cancel", cancel)
    register(engine)
    key, run_id = await held_claim(engine)
    await mageflow.cancel(key)
    assert await raw.status(key) == "canceled"
    # the run the engine holds queued goes too: it never arrives to skip itself
    assert cancelled == [run_id]
