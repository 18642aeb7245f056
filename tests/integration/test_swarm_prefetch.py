"""Swarm members sent to the engine ahead of free places (``SwarmConfig.prefetch``).

The in-memory engine starts every run at once (more free slots than the swarm
may use), which is the case where runs sent ahead arrive while every place is
taken: they must wait for a place, never run past the cap, and hand their
claim back when none frees in time.
"""

from __future__ import annotations

import asyncio
from typing import Any

import mageflow
import pytest
from mageflow import MageflowRuntime, SignatureStatus, SwarmConfig, SwarmSignature
from mageflow import _worker as worker
from mageflow._store.keys import F
from mageflow.inmemory import InMemoryTaskManager, NonRetryableError

from tests.integration._helpers import Raw, eventually
from tests.integration.container_models import Num, Results

pytestmark = pytest.mark.usefixtures("runtime")


class Bodies:
    def __init__(self) -> None:
        self.ran: list[int] = []
        self.running = 0
        self.peak = 0
        self.gate: asyncio.Event | None = None
        self.results: list[Any] = []


@pytest.fixture
def bodies(manager: InMemoryTaskManager) -> Bodies:
    rec = Bodies()

    @manager.task("pf-work")
    async def work(msg: Num) -> int:
        rec.ran.append(msg.x)
        rec.running += 1
        rec.peak = max(rec.peak, rec.running)
        try:
            if rec.gate is not None:
                await rec.gate.wait()
            await asyncio.sleep(0.002)
        finally:
            rec.running -= 1
        if msg.fail:
            raise NonRetryableError(f"member {msg.x} failed")
        return msg.x

    @manager.task("pf-collect")
    async def collect(msg: Results) -> None:
        rec.results.append(msg.mageflow_results)

    return rec


async def _claimed(raw: Raw, key: str) -> int:
    return int(await raw.client.hget(raw.sig_key(key), F.running) or 0)


async def test_prefetch_sends_ahead_but_never_runs_past_the_cap(
    manager: InMemoryTaskManager, bodies: Bodies
) -> None:
    ok = await mageflow.asign("pf-collect")
    sw = await mageflow.aswarm(
        success_callbacks=[ok],
        config=SwarmConfig(max_concurrency=3, prefetch=3),
        is_swarm_closed=False,
    )
    await sw.aio_run_tasks_in_swarm(["pf-work"] * 30, [Num(x=i) for i in range(30)])
    await sw.aio_run_no_wait()
    await sw.close_swarm()
    await manager.wait_idle(timeout=30)

    assert 1 < bodies.peak <= 3
    assert sorted(bodies.ran) == list(range(30))  # each body once
    assert bodies.results == [list(range(30))]


async def test_runs_sent_ahead_are_queued_in_the_engine_and_counted_as_queued(
    manager: InMemoryTaskManager, runtime: MageflowRuntime, raw: Raw, bodies: Bodies
) -> None:
    manager.hold = True
    sw = await mageflow.aswarm(config=SwarmConfig(max_concurrency=2, prefetch=4))
    await sw.aio_run_tasks_in_swarm(["pf-work"] * 10, [Num(x=i) for i in range(10)])
    await sw.aio_run_no_wait()
    assert len(manager.runs) == 6  # the cap and the prefetch: all in the engine
    assert await _claimed(raw, sw.key) == 6
    progress = await runtime.progress(sw.key)
    assert (progress.running, progress.queued) == (0, 10)
    bodies.gate = asyncio.Event()
    manager.release()
    await eventually(lambda: _is(bodies, 2), what="two members running")
    progress = await runtime.progress(sw.key)
    assert (progress.running, progress.queued) == (2, 8)
    bodies.gate.set()
    await sw.close_swarm()
    await manager.wait_idle(timeout=30)
    assert sorted(bodies.ran) == list(range(10))
    assert bodies.peak == 2


async def _is(bodies: Bodies, n: int) -> bool:
    return bodies.running == n


async def test_claims_ahead_are_topped_up_in_batches(
    manager: InMemoryTaskManager, runtime: MageflowRuntime, raw: Raw, bodies: Bodies
) -> None:
    # a quarter of the prefetch at a time: one bulk trigger, not one per completion
    manager.hold = True
    sw = await mageflow.aswarm(config=SwarmConfig(max_concurrency=1, prefetch=8))
    await sw.aio_run_tasks_in_swarm(["pf-work"] * 40, [Num(x=i) for i in range(40)])
    await sw.aio_run_no_wait()
    assert await _claimed(raw, sw.key) == 9
    first = sorted(manager.runs.values(), key=lambda r: r.input["x"])[0]
    # one member ends (run by hand: the held engine starts nothing): 8 claimed,
    # above the refill mark (9 - 2), so nothing new is sent
    await _run(runtime, first)
    assert await _claimed(raw, sw.key) == 8
    assert len(manager.runs) == 9
    await _run(runtime, sorted(manager.runs.values(), key=lambda r: r.input["x"])[1])
    # 7 claimed, at the mark: topped up to 9, the two new runs in one go
    assert await _claimed(raw, sw.key) == 9
    assert len(manager.runs) == 11
    manager.release()
    await sw.close_swarm()
    await manager.wait_idle(timeout=30)
    assert sorted(bodies.ran) == list(range(2, 40))  # the first two ran by hand


async def _run(runtime: MageflowRuntime, record: Any) -> None:
    from mageflow.engine import RunRequest

    async def body(arg: Any, sig: Any) -> Any:
        return arg.x

    outcome = await runtime.execute_run(
        RunRequest(
            signature_key=record.signature_key,
            dispatch_id=record.dispatch_id,
            run_id=record.run_id,
            payload=record.input,
            body=body,
            model=Num,
            task_name=record.task_name,
        )
    )
    assert outcome.ran
    record.status = "succeeded"


async def test_a_run_that_finds_no_place_in_time_hands_its_claim_back(
    manager: InMemoryTaskManager,
    runtime: MageflowRuntime,
    raw: Raw,
    bodies: Bodies,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sw, gate = await _one_place_one_ahead(bodies, 3, monkeypatch, place_wait=0.2)
    await eventually(lambda: _deferred(manager), what="a run handing its claim back")
    deferred = next(r for r in manager.runs.values() if r.status == "skipped:deferred")
    assert bodies.ran == [0]  # the first member holds the only place
    # back at the head of the queue, its claim withdrawn
    queue = await raw.client.lrange(runtime.store.keys.swarm_queue(sw.key), 0, -1)
    assert queue[0] == deferred.signature_key
    assert await _claimed(raw, sw.key) == 1
    full_at = await raw.client.hget(raw.sig_key(sw.key), F.full_at)
    assert full_at is not None
    gate.set()
    await sw.close_swarm()
    await manager.wait_idle(timeout=30)
    assert sorted(bodies.ran) == [0, 1, 2]  # every body once, the deferred one too
    # the same run delivered again is stale: it does not run the member twice
    again = await runtime.execute_run(
        _request(deferred.signature_key, deferred.dispatch_id, deferred.run_id)
    )
    assert (again.ran, again.reason) == (False, "finished")


async def test_a_run_waiting_for_a_place_keeps_its_claim_in_the_reconcilers_view(
    manager: InMemoryTaskManager,
    runtime: MageflowRuntime,
    raw: Raw,
    bodies: Bodies,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Found by a long chaos run: BEGIN took the claim out of the pending index
    # before it knew whether the run could begin. A run lost while it waited
    # for a place (its worker killed until the engine gave up on it) left the
    # member claimed, never begun and watched by nobody: its swarm never ended.
    sw, gate = await _one_place_one_ahead(bodies, 2, monkeypatch, place_wait=5.0)
    await sw.close_swarm()
    members = await raw.client.lrange(runtime.store.keys.swarm_members(sw.key), 0, -1)
    waiting = raw.sig_key(members[1])
    await eventually(
        lambda: _has_full_at(raw, sw.key), what="the second member's run waiting for a place"
    )
    assert bodies.ran == [0]
    assert await raw.client.zscore(runtime.store.keys.pending, waiting) is not None
    assert await raw.client.hget(waiting, F.claim) is not None
    assert await raw.client.hget(waiting, F.status) == SignatureStatus.PENDING.value
    gate.set()
    await manager.wait_idle(timeout=30)
    assert sorted(bodies.ran) == [0, 1]
    # once begun, the run is the active index's business
    assert await raw.client.zscore(runtime.store.keys.pending, waiting) is None
    assert await raw.client.hget(waiting, F.claim) is None


async def _one_place_one_ahead(
    bodies: Bodies, n: int, monkeypatch: pytest.MonkeyPatch, *, place_wait: float
) -> tuple[SwarmSignature, asyncio.Event]:
    """A running swarm of ``n`` members held at a gate, one place, one member sent ahead.

    A run that finds the place taken waits for it up to ``place_wait`` seconds.
    """
    monkeypatch.setattr(worker, "_PLACE_WAIT", place_wait)
    gate = bodies.gate = asyncio.Event()
    sw = await mageflow.aswarm(config=SwarmConfig(max_concurrency=1, prefetch=1))
    await sw.aio_run_tasks_in_swarm(["pf-work"] * n, [Num(x=i) for i in range(n)])
    await sw.aio_run_no_wait()
    return sw, gate


def _request(key: str, dispatch_id: str, run_id: str) -> Any:
    from mageflow.engine import RunRequest

    async def body(arg: Any, sig: Any) -> Any:
        raise AssertionError("must not run")

    return RunRequest(
        signature_key=key, dispatch_id=dispatch_id, run_id=run_id, payload={}, body=body
    )


async def _deferred(manager: InMemoryTaskManager) -> bool:
    return any(r.status == "skipped:deferred" for r in manager.runs.values())


async def test_claims_ahead_pause_after_a_run_found_every_place_taken(
    manager: InMemoryTaskManager, runtime: MageflowRuntime, raw: Raw, bodies: Bodies
) -> None:
    bodies.gate = asyncio.Event()
    sw = await mageflow.aswarm(config=SwarmConfig(max_concurrency=2, prefetch=4))
    await sw.aio_run_tasks_in_swarm(["pf-work"] * 20, [Num(x=i) for i in range(20)])
    await sw.aio_run_no_wait()
    # the in-memory engine starts all six at once: four wait for a place
    await eventually(lambda: _has_full_at(raw, sw.key), what="a run finding every place taken")
    bodies.gate.set()
    await sw.close_swarm()
    await manager.wait_idle(timeout=30)
    assert sorted(bodies.ran) == list(range(20))
    # members after the pause began were claimed up to the cap only: no more
    # than six runs were ever claimed, fewer than 20 + waits
    assert bodies.peak <= 2


async def _has_full_at(raw: Raw, key: str) -> bool:
    return await raw.client.hget(raw.sig_key(key), F.full_at) is not None


@pytest.mark.parametrize("pause", ["suspend", "cancel", "interrupt"])
async def test_a_paused_or_cancelled_swarm_runs_no_body_of_runs_sent_ahead(
    manager: InMemoryTaskManager, runtime: MageflowRuntime, bodies: Bodies, pause: str
) -> None:
    manager.hold = True
    sw = await mageflow.aswarm(config=SwarmConfig(max_concurrency=2, prefetch=4))
    await sw.aio_run_tasks_in_swarm(["pf-work"] * 10, [Num(x=i) for i in range(10)])
    await sw.aio_run_no_wait()
    assert len(manager.runs) == 6  # queued in the engine, none begun
    if pause == "suspend":
        await mageflow.pause(sw.key)
    elif pause == "interrupt":
        await mageflow.pause(sw.key, mageflow.PauseActionTypes.INTERRUPT)
    else:
        await mageflow.cancel(sw.key)
    manager.release()
    await manager.wait_idle(timeout=30)
    assert bodies.ran == []
    if pause == "cancel":
        assert await _status(sw.key) == SignatureStatus.CANCELED
        return
    await mageflow.resume(sw.key)
    await sw.close_swarm()
    await manager.wait_idle(timeout=30)
    assert sorted(bodies.ran) == list(range(10))  # each once, after the resume


async def _status(key: str) -> SignatureStatus:
    sig = await mageflow.load_signature(key)
    assert sig is not None
    return sig.status


async def test_members_sent_ahead_of_a_failed_swarm_are_skipped_on_arrival(
    manager: InMemoryTaskManager, runtime: MageflowRuntime, raw: Raw, bodies: Bodies
) -> None:
    bodies.gate = asyncio.Event()
    manager.hold = True
    sw = await mageflow.aswarm(
        config=SwarmConfig(max_concurrency=1, prefetch=3, stop_after_n_failures=1)
    )
    msgs = [Num(x=0, fail=True), *(Num(x=i) for i in range(1, 8))]
    await sw.aio_run_tasks_in_swarm(["pf-work"] * 8, msgs)
    await sw.aio_run_no_wait()
    first = next(r for r in manager.runs.values() if r.input["x"] == 0)
    bodies.gate.set()
    manager.hold = False
    manager._running[first.run_id] = asyncio.create_task(
        manager._execute(manager._tasks["pf-work"], first)
    )
    await eventually(lambda: _failed(sw.key), what="the swarm failing")
    manager.release()
    await manager.wait_idle(timeout=30)
    assert bodies.ran == [0]
    progress = await runtime.progress(sw.key)
    assert progress.failed == 1
    # the three sent ahead were skipped on arrival, the four queued at the failure
    assert progress.skipped == 7
    assert (progress.running, progress.queued) == (0, 0)


async def _failed(key: str) -> bool:
    return await _status(key) == SignatureStatus.FAILED


async def test_a_run_arriving_before_the_swarms_cancel_reached_its_member_cancels_it(
    manager: InMemoryTaskManager, runtime: MageflowRuntime, raw: Raw, bodies: Bodies
) -> None:
    manager.hold = True
    sw = await mageflow.aswarm(config=SwarmConfig(max_concurrency=1, prefetch=1))
    await sw.aio_run_tasks_in_swarm(["pf-work"] * 3, [Num(x=i) for i in range(3)])
    await sw.aio_run_no_wait()
    # the swarm is canceled, its members not yet (the cancel walks them after)
    await raw.client.hset(raw.sig_key(sw.key), "s", "canceled")
    record = next(iter(manager.runs.values()))
    outcome = await runtime.execute_run(
        _request(record.signature_key, record.dispatch_id, record.run_id)
    )
    assert (outcome.ran, outcome.reason) == (False, "canceled")
    assert await _status(record.signature_key) == SignatureStatus.CANCELED
    assert bodies.ran == []
    manager.runs.clear()
