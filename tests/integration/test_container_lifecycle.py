"""suspend / resume / interrupt / pause_task / remove on chains and swarms, recursively."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import mageflow
import pytest
from mageflow import MageflowRuntime, PauseActionTypes, RunRequest, SignatureStatus, SwarmConfig
from mageflow.inmemory import InMemoryTask, InMemoryTaskManager, RunRecord

from tests.integration._helpers import Raw, eventually, swarm_counters
from tests.integration.container_models import Num, Prev, Results

pytestmark = pytest.mark.usefixtures("runtime")


class Board:
    """Task bodies that can be held mid-run, and what started and finished."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.hold: set[int] = set()  # values of x (members) / prev (steps) that wait
        self.started: Counter[str] = Counter()
        self.finished: Counter[str] = Counter()
        self.running: Counter[str] = Counter()
        self.results: list[Any] = []

    async def body(self, label: str, held: bool) -> None:
        self.started[label] += 1
        self.running[label] += 1
        try:
            if held:
                await self.release.wait()
            await asyncio.sleep(0)
        finally:
            self.running[label] -= 1
        self.finished[label] += 1


@pytest.fixture
def board(manager: InMemoryTaskManager) -> Board:
    b = Board()

    @manager.task("member")
    async def member(msg: Num) -> int:
        await b.body(f"m{msg.x}", msg.x in b.hold)
        return msg.x

    @manager.task("first")
    async def first(msg: Num) -> int:
        await b.body("first", False)
        return msg.x

    @manager.task("step")
    async def step(msg: Prev) -> int:
        label = f"s{msg.prev}"
        await b.body(label, int(msg.prev) in b.hold)
        return int(msg.prev) + 1

    @manager.task("collect")
    async def collect(msg: Results) -> None:
        b.results.append(msg.mageflow_results)

    return b


def gate(manager: InMemoryTaskManager, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Hold every dispatched run before it reaches the worker path."""
    opened = asyncio.Event()
    original = manager._execute

    async def held(task: InMemoryTask, record: RunRecord) -> None:
        await opened.wait()
        await original(task, record)

    monkeypatch.setattr(manager, "_execute", held)
    return opened


async def _status(key: str) -> SignatureStatus:
    sig = await mageflow.load_signature(key)
    assert sig is not None
    return sig.status


def _once(board: Board, labels: list[str]) -> None:
    """Every label finished exactly once."""
    assert {lbl: board.finished[lbl] for lbl in labels} == dict.fromkeys(labels, 1)
    assert sum(board.finished.values()) == len(labels)


# -- chains ----------------------------------------------------------------------------


async def test_suspend_and_resume_a_chain_midway(
    manager: InMemoryTaskManager, board: Board, raw: Raw
) -> None:
    board.hold = {1}
    ok = await mageflow.asign("collect")
    ch = await mageflow.achain(["first", "step", "step", "step"], success=[ok])
    await ch.aio_run_no_wait(Num(x=1))
    await eventually(lambda: _running(board, "s1"), what="step 2 running")

    await ch.suspend()
    assert ch.task_status.status is SignatureStatus.SUSPENDED
    assert [await raw.status(k) for k in ch.tasks] == ["done", *["suspended"] * 3]
    board.release.set()
    await manager.wait_idle()
    # the running step finished; the next one was parked, nothing else ran
    assert [await raw.status(k) for k in ch.tasks] == ["done", "done", "suspended", "suspended"]
    assert board.started["s2"] == 0 and board.results == []

    await ch.resume()
    await manager.wait_idle()
    _once(board, ["first", "s1", "s2", "s3"])
    assert board.results == [4]
    assert await _status(ch.key) is SignatureStatus.DONE


async def test_interrupt_and_resume_a_chain_midway(
    manager: InMemoryTaskManager, board: Board, raw: Raw
) -> None:
    board.hold = {1}
    ok = await mageflow.asign("collect")
    ch = await mageflow.achain(["first", "step", "step"], success=[ok])
    await ch.aio_run_no_wait(Num(x=1))
    await eventually(lambda: _running(board, "s1"), what="step 2 running")

    await ch.interrupt()
    await manager.wait_idle()
    assert board.finished["s1"] == 0  # cancelled
    assert [await raw.status(k) for k in ch.tasks] == ["done", "interrupted", "interrupted"]

    board.hold = set()
    await ch.resume()
    await manager.wait_idle()
    assert board.started["s1"] == 2  # the interrupted run is run again
    _once(board, ["first", "s1", "s2"])
    assert board.results == [3]
    assert await _status(ch.key) is SignatureStatus.DONE


async def test_a_chain_suspended_before_start_starts_on_resume(
    manager: InMemoryTaskManager, board: Board, raw: Raw
) -> None:
    ok = await mageflow.asign("collect")
    ch = await mageflow.achain(["first", "step"], success=[ok])
    await ch.suspend()
    await ch.aio_run_no_wait(Num(x=5))
    await manager.wait_idle()
    assert sum(board.started.values()) == 0
    assert await _status(ch.key) is SignatureStatus.SUSPENDED

    await ch.resume()
    await manager.wait_idle()
    _once(board, ["first", "s5"])
    assert board.results == [6]


async def test_a_chain_interrupted_before_its_first_run_begins_resumes(
    manager: InMemoryTaskManager, board: Board, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first step is dispatched but has not reached a worker when the chain is
    interrupted: the run is skipped on arrival, and resume must still start it."""
    opened = gate(manager, monkeypatch)
    ok = await mageflow.asign("collect")
    ch = await mageflow.achain(["first", "step"], success=[ok])
    await ch.aio_run_no_wait(Num(x=1))
    await ch.interrupt()
    opened.set()
    await manager.wait_idle()
    assert sum(board.started.values()) == 0

    await ch.resume()
    await manager.wait_idle()
    _once(board, ["first", "s1"])
    assert board.results == [2]


# -- swarms ----------------------------------------------------------------------------


async def _swarm(
    board: Board, n: int, cap: int, hold: set[int]
) -> tuple[mageflow.SwarmSignature, list[str]]:
    board.hold = hold
    ok = await mageflow.asign("collect")
    sw = await mageflow.aswarm(success_callbacks=[ok], config=SwarmConfig(max_concurrency=cap))
    members = await sw.aio_run_tasks_in_swarm(["member"] * n, [Num(x=i) for i in range(n)])
    await sw.close_swarm()
    return sw, members


async def test_suspend_and_resume_a_swarm_midway(
    manager: InMemoryTaskManager, board: Board, raw: Raw, runtime: MageflowRuntime
) -> None:
    sw, members = await _swarm(board, 6, 2, {0, 1})
    await sw.aio_run_no_wait()
    await eventually(lambda: _running_count(board, 2), what="two members running")

    await sw.pause_task(PauseActionTypes.SUSPEND)
    assert await _status(sw.key) is SignatureStatus.SUSPENDED
    assert [await raw.status(k) for k in members] == ["suspended"] * 6
    board.release.set()
    await manager.wait_idle()
    assert sum(board.finished.values()) == 2  # nothing new started while suspended
    counters = await swarm_counters(runtime.store, sw.key)
    assert counters == {"admitted": 6, "running": 0, "succeeded": 2, "failed": 0}

    await mageflow.resume(sw.key)
    await manager.wait_idle()
    _once(board, [f"m{i}" for i in range(6)])
    assert board.results == [list(range(6))]
    assert await _status(sw.key) is SignatureStatus.DONE


async def test_interrupt_and_resume_a_swarm_midway(
    manager: InMemoryTaskManager, board: Board, raw: Raw, runtime: MageflowRuntime
) -> None:
    sw, members = await _swarm(board, 5, 2, {0, 1})
    await sw.aio_run_no_wait()
    await eventually(lambda: _running_count(board, 2), what="two members running")

    await mageflow.pause(sw.key, PauseActionTypes.INTERRUPT)
    await manager.wait_idle()
    assert sum(board.finished.values()) == 0
    assert [await raw.status(k) for k in members] == ["interrupted"] * 5
    assert await _status(sw.key) is SignatureStatus.INTERRUPTED

    board.hold = set()
    await sw.resume()
    await manager.wait_idle()
    assert board.started["m0"] == 2 and board.started["m1"] == 2
    _once(board, [f"m{i}" for i in range(5)])
    assert board.results == [list(range(5))]
    assert await swarm_counters(runtime.store, sw.key) == {
        "admitted": 5,
        "running": 0,
        "succeeded": 5,
        "failed": 0,
    }


async def test_a_swarm_interrupted_before_its_members_begin_resumes(
    manager: InMemoryTaskManager,
    board: Board,
    runtime: MageflowRuntime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Members dispatched but not yet at a worker when the swarm is interrupted are
    skipped on arrival; resume must run them, not leave them counted as running."""
    opened = gate(manager, monkeypatch)
    sw, _ = await _swarm(board, 4, 2, set())
    await sw.aio_run_no_wait()
    await sw.interrupt()
    opened.set()
    await manager.wait_idle()
    assert sum(board.started.values()) == 0

    await sw.resume()
    await manager.wait_idle()
    _once(board, [f"m{i}" for i in range(4)])
    assert board.results == [list(range(4))]


async def test_a_parked_member_then_interrupted_runs_on_resume(
    manager: InMemoryTaskManager,
    board: Board,
    raw: Raw,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Suspended while their runs were on the way (parked on arrival), then
    interrupted: one resume must replay the parked runs."""
    opened = gate(manager, monkeypatch)
    sw, members = await _swarm(board, 3, 2, set())
    await sw.aio_run_no_wait()
    await sw.suspend()
    opened.set()
    await manager.wait_idle()
    assert sum(board.started.values()) == 0
    await sw.interrupt()
    assert [await raw.status(k) for k in members] == ["interrupted"] * 3

    await sw.resume()
    await manager.wait_idle()
    _once(board, ["m0", "m1", "m2"])
    assert board.results == [[0, 1, 2]]


def finish_before_resuming(
    runtime: MageflowRuntime, monkeypatch: pytest.MonkeyPatch, late: str, first: Any
) -> None:
    """Make resume reach ``late`` only once ``first()`` holds (a fast engine finishing
    a replayed sibling while resume still walks the members)."""
    original = runtime.store.transition

    async def transition(key: str, event: Any, *args: Any) -> Any:
        if key == late and event == "resume":
            await eventually(first, what="the replayed sibling to finish")
        return await original(key, event, *args)

    monkeypatch.setattr(runtime.store, "transition", transition)


async def test_a_queued_member_still_interrupted_when_a_sibling_finishes_is_not_lost(
    manager: InMemoryTaskManager,
    board: Board,
    runtime: MageflowRuntime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sw, members = await _swarm(board, 3, 2, {0, 1})
    await sw.aio_run_no_wait()
    await eventually(lambda: _running_count(board, 2), what="two members running")
    await sw.interrupt()
    await manager.wait_idle()
    board.hold = set()

    async def replayed() -> bool:
        return board.finished["m0"] == 1

    finish_before_resuming(runtime, monkeypatch, members[2], replayed)
    await sw.resume()
    await manager.wait_idle()
    _once(board, ["m0", "m1", "m2"])
    assert board.results == [[0, 1, 2]]


async def test_a_chain_step_still_interrupted_when_the_previous_finishes_is_not_lost(
    manager: InMemoryTaskManager,
    board: Board,
    runtime: MageflowRuntime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    board.hold = {1}
    ok = await mageflow.asign("collect")
    ch = await mageflow.achain(["first", "step", "step"], success=[ok])
    await ch.aio_run_no_wait(Num(x=1))
    await eventually(lambda: _running(board, "s1"), what="step 2 running")
    await ch.interrupt()
    await manager.wait_idle()
    board.hold = set()

    async def replayed() -> bool:
        return board.finished["s1"] == 1

    finish_before_resuming(runtime, monkeypatch, ch.tasks[2], replayed)
    await ch.resume()
    await manager.wait_idle()
    _once(board, ["first", "s1", "s2"])
    assert board.results == [3]


async def test_a_nested_chain_still_interrupted_when_its_turn_comes_starts_on_resume(
    manager: InMemoryTaskManager,
    board: Board,
    runtime: MageflowRuntime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    board.hold = {0}
    ok = await mageflow.asign("collect")
    inner = await mageflow.achain(["first", "step"])
    sw = await mageflow.aswarm(
        tasks=["member", inner], success_callbacks=[ok], config=SwarmConfig(max_concurrency=1)
    )
    await sw.close_swarm()
    await sw.aio_run_no_wait(Num(x=0))
    await eventually(lambda: _running(board, "m0"), what="the first member running")
    await sw.interrupt()
    await manager.wait_idle()
    board.hold = set()

    async def replayed() -> bool:
        return board.finished["m0"] == 1

    finish_before_resuming(runtime, monkeypatch, inner.key, replayed)
    await sw.resume()
    await manager.wait_idle()
    _once(board, ["m0", "first", "s0"])
    assert board.results == [[0, 1]]


async def test_resume_of_a_never_suspended_swarm_changes_nothing(
    manager: InMemoryTaskManager, board: Board
) -> None:
    sw, _ = await _swarm(board, 3, 1, set())
    await sw.aio_run_no_wait()
    await sw.resume()
    await manager.wait_idle()
    _once(board, ["m0", "m1", "m2"])
    assert board.results == [[0, 1, 2]]


async def test_a_redelivered_dispatch_while_suspended_does_not_run_a_member_twice(
    manager: InMemoryTaskManager, board: Board, runtime: MageflowRuntime
) -> None:
    """A duplicate delivery of a member's dispatch (a redrained outbox, or the engine
    delivering twice) arrives while the member runs and the swarm is suspended: it
    must be skipped, not parked and replayed on resume."""
    sw, members = await _swarm(board, 2, 1, {1})
    await sw.aio_run_no_wait()
    await eventually(lambda: _running(board, "m1"), what="second member running")
    first = next(r for r in manager.runs.values() if r.signature_key == members[0])

    await sw.suspend()
    # the first member's completion is redelivered: its outbox (member 2) is drained again
    outcome = await runtime.execute_run(_request(first))
    assert outcome.reason == "drained"
    await asyncio.sleep(0.05)
    await sw.resume()
    board.release.set()
    await manager.wait_idle()
    assert board.started["m1"] == 1
    _once(board, ["m0", "m1"])
    assert board.results == [[0, 1]]


async def test_nested_containers_are_suspended_and_resumed_recursively(
    manager: InMemoryTaskManager, board: Board, raw: Raw
) -> None:
    board.hold = {0}
    ok = await mageflow.asign("collect")
    inner = await mageflow.achain(["member", "step", "step"])
    inner_swarm = await mageflow.aswarm(tasks=["member", "member"], is_swarm_closed=True)
    sw = await mageflow.aswarm(
        tasks=[inner, inner_swarm], success_callbacks=[ok], config=SwarmConfig(max_concurrency=2)
    )
    await sw.close_swarm()
    await sw.aio_run_no_wait(Num(x=0))
    await eventually(lambda: _running_count(board, 3), what="three held members")

    await sw.suspend()
    assert await _status(inner.key) is SignatureStatus.SUSPENDED
    assert await _status(inner_swarm.key) is SignatureStatus.SUSPENDED
    assert [await raw.status(k) for k in inner.tasks] == ["suspended"] * 3
    board.release.set()
    await manager.wait_idle()
    assert board.started["s0"] == 0  # the chain's next step is parked

    await sw.resume()
    await manager.wait_idle()
    assert board.started == Counter({"m0": 3, "s0": 1, "s1": 1})
    assert board.results == [[2, [0, 0]]]


# -- remove ----------------------------------------------------------------------------


async def test_remove_deletes_a_container_with_its_members_recursively(
    manager: InMemoryTaskManager, board: Board, raw: Raw
) -> None:
    keep = await mageflow.asign("collect")
    ok = await mageflow.asign("collect")
    inner = await mageflow.achain(["first", "step"])
    sw = await mageflow.aswarm(tasks=[inner, "member"], success_callbacks=[ok])
    before = set(await raw.snapshot())
    assert any(k.endswith(f"swarm:{sw.key}:m") for k in before)

    await sw.remove()
    after = set(await raw.snapshot())
    assert after == {raw.sig_key(keep.key)}


async def test_removing_a_running_swarm_stops_it_quietly(
    manager: InMemoryTaskManager, board: Board, raw: Raw
) -> None:
    sw, _ = await _swarm(board, 4, 2, {0, 1})
    await sw.aio_run_no_wait()
    await eventually(lambda: _running_count(board, 2), what="two members running")
    await mageflow.remove(sw.key)
    board.release.set()
    await manager.wait_idle()
    assert sum(board.started.values()) == 2
    assert board.results == []
    assert await raw.snapshot() == {}


async def test_remove_of_a_chain_keeps_callbacks_when_asked(
    manager: InMemoryTaskManager, board: Board, raw: Raw
) -> None:
    ok = await mageflow.asign("collect")
    ch = await mageflow.achain(["first", "step"], success=[ok])
    await ch.remove(with_success=False)
    assert set(await raw.snapshot()) == {raw.sig_key(ok.key)}


# -- helpers ---------------------------------------------------------------------------


async def _running(board: Board, label: str) -> bool:
    return board.running[label] > 0


async def _running_count(board: Board, n: int) -> bool:
    return sum(board.running.values()) == n


async def _no_body(arg: Any, sig: Any) -> Any:
    raise AssertionError("a finished run's body must not run again")


def _request(record: RunRecord) -> RunRequest:
    return RunRequest(
        signature_key=record.signature_key,
        dispatch_id=record.dispatch_id,
        run_id=record.run_id,
        payload=record.input,
        body=_no_body,
        is_final_failure=lambda e: True,
        task_name=record.task_name,
    )
