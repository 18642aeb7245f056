"""Swarms on the in-memory engine: messages, concurrency cap, callbacks, thresholds, limits."""

from __future__ import annotations

import asyncio
from typing import Any

import mageflow
import pytest
from mageflow import (
    MageflowRuntime,
    MageflowValidationError,
    SignatureStatus,
    SwarmClosedError,
    SwarmConfig,
    SwarmFullError,
)
from mageflow.inmemory import InMemoryTaskManager, NonRetryableError

from tests.integration._helpers import Raw, eventually, swarm_counters
from tests.integration.container_models import Loose, Num, Results

pytestmark = pytest.mark.usefixtures("runtime")


class Seen:
    """What each task body received, and how many ``work`` bodies ran at once."""

    def __init__(self) -> None:
        self.calls: dict[str, list[Any]] = {}
        self.running = 0
        self.peak = 0
        self.gate: asyncio.Event | None = None

    def add(self, name: str, value: Any) -> None:
        self.calls.setdefault(name, []).append(value)

    def of(self, name: str) -> list[Any]:
        return self.calls.get(name, [])


@pytest.fixture
def seen(manager: InMemoryTaskManager) -> Seen:
    rec = Seen()

    @manager.task("work")
    async def work(msg: Num) -> int:
        rec.add("work", msg)
        rec.running += 1
        rec.peak = max(rec.peak, rec.running)
        try:
            if rec.gate is not None:
                await rec.gate.wait()
            await asyncio.sleep(0.002 + 0.001 * (msg.x % 5))
        finally:
            rec.running -= 1
        if msg.fail:
            raise NonRetryableError(f"member {msg.x} failed")
        return msg.x * 10

    @manager.task("loose")
    async def loose(msg: Loose) -> dict[str, Any]:
        rec.add("loose", msg.model_dump())
        return msg.model_dump()

    @manager.task("collect")
    async def collect(msg: Results) -> None:
        rec.add("collect", msg)

    @manager.task("on_error")
    async def on_error(msg: Loose) -> None:
        rec.add("on_error", msg.model_dump())

    return rec


async def _status(key: str) -> SignatureStatus:
    sig = await mageflow.load_signature(key)
    assert sig is not None
    return sig.status


# -- messages --------------------------------------------------------------------------


async def test_members_receive_swarm_message_swarm_kwargs_and_own_kwargs(
    manager: InMemoryTaskManager, seen: Seen
) -> None:
    plain = await mageflow.asign("loose")
    own = await mageflow.asign("loose", tag="own", extra="mine")
    sw = await mageflow.aswarm(tasks=[plain, own], is_swarm_closed=True, tag="swarm", z=1)
    await sw.aio_run_no_wait({"m": "msg", "tag": "from-msg", "z": 0})
    await manager.wait_idle()

    got = sorted(seen.of("loose"), key=lambda d: d["tag"])
    assert got == [
        {"m": "msg", "tag": "own", "z": 1, "extra": "mine"},
        {"m": "msg", "tag": "swarm", "z": 1},
    ]


async def test_run_in_swarm_gives_members_their_own_message(
    manager: InMemoryTaskManager, seen: Seen
) -> None:
    ok = await mageflow.asign("collect")
    sw = await mageflow.aswarm(success_callbacks=[ok], add=7)
    await sw.aio_run_in_swarm(["loose", "loose"], {"src": "in_swarm"})
    await sw.aio_run_tasks_in_swarm(["loose", "loose"], [{"i": 1}, {"i": 2, "add": 0}])
    await sw.aio_run_no_wait({"src": "start"})
    await sw.aio_run_in_swarm("loose")  # no own message: gets the swarm's
    await sw.close_swarm()
    await manager.wait_idle()

    (done,) = seen.of("collect")
    assert done.mageflow_results == [
        {"src": "in_swarm", "add": 7, "tag": ""},
        {"src": "in_swarm", "add": 7, "tag": ""},
        {"i": 1, "add": 7, "tag": ""},
        {"i": 2, "add": 7, "tag": ""},  # swarm kwargs win over the message
        {"src": "start", "add": 7, "tag": ""},
    ]


async def test_run_tasks_in_swarm_needs_one_message_per_task(seen: Seen) -> None:
    sw = await mageflow.aswarm()
    with pytest.raises(MageflowValidationError, match="one message per task"):
        await sw.aio_run_tasks_in_swarm(["loose", "loose"], [{"i": 1}])


# -- concurrency -----------------------------------------------------------------------


@pytest.mark.parametrize("cap", [1, 3])
async def test_never_more_than_max_concurrency_running(
    manager: InMemoryTaskManager, seen: Seen, cap: int
) -> None:
    ok = await mageflow.asign("collect")
    sw = await mageflow.aswarm(
        success_callbacks=[ok], config=SwarmConfig(max_concurrency=cap), is_swarm_closed=False
    )
    await sw.aio_run_tasks_in_swarm(["work"] * 12, [Num(x=i) for i in range(12)])
    await sw.aio_run_no_wait()
    await sw.close_swarm()
    await manager.wait_idle()

    assert 1 <= seen.peak <= cap
    assert cap == 1 or seen.peak > 1  # members did run side by side
    (done,) = seen.of("collect")
    assert done.mageflow_results == [i * 10 for i in range(12)]


async def test_counters_follow_the_cap_while_members_are_held(
    manager: InMemoryTaskManager, seen: Seen, runtime: MageflowRuntime, raw: Raw
) -> None:
    seen.gate = asyncio.Event()
    sw = await mageflow.aswarm(config=SwarmConfig(max_concurrency=2))
    await sw.aio_run_tasks_in_swarm(["work"] * 5, [Num(x=i) for i in range(5)])
    await sw.aio_run_no_wait()
    await eventually(lambda: _running_is(seen, 2), what="two members running")
    assert await swarm_counters(runtime.store, sw.key) == {
        "admitted": 5,
        "running": 2,
        "succeeded": 0,
        "failed": 0,
    }
    assert await raw.client.llen(runtime.store.keys.swarm_queue(sw.key)) == 3
    seen.gate.set()
    await sw.close_swarm()
    await manager.wait_idle()
    assert await swarm_counters(runtime.store, sw.key) == {
        "admitted": 5,
        "running": 0,
        "succeeded": 5,
        "failed": 0,
    }


async def _running_is(seen: Seen, n: int) -> bool:
    return seen.running == n


async def test_members_added_before_start_wait_for_the_start(
    manager: InMemoryTaskManager, seen: Seen
) -> None:
    sw = await mageflow.aswarm(tasks=["work", "work"])
    await manager.wait_idle()
    assert seen.of("work") == []
    await sw.aio_run_no_wait(Num(x=4))
    await manager.wait_idle()
    assert [m.x for m in seen.of("work")] == [4, 4]


# -- completion ------------------------------------------------------------------------


async def test_success_callbacks_wait_for_close(manager: InMemoryTaskManager, seen: Seen) -> None:
    ok = await mageflow.asign("collect", tag="done")
    sw = await mageflow.aswarm(success_callbacks=[ok])
    await sw.aio_run_no_wait(Num(x=1))
    await sw.aio_run_in_swarm("work")
    await manager.wait_idle()
    assert seen.of("collect") == []
    assert await _status(sw.key) is SignatureStatus.ACTIVE

    await sw.aio_run_in_swarm("work", Num(x=2))  # add while running
    await manager.wait_idle()
    await sw.close_swarm()
    await manager.wait_idle()
    (done,) = seen.of("collect")
    assert (done.tag, done.mageflow_results) == ("done", [10, 20])
    assert await _status(sw.key) is SignatureStatus.DONE


async def test_results_follow_admission_order_not_completion_order(
    manager: InMemoryTaskManager, seen: Seen
) -> None:
    ok = await mageflow.asign("collect")
    # x % 5 is the member's delay: later members finish first
    xs = [4, 3, 2, 1, 0, 9, 8]
    sw = await mageflow.aswarm(success_callbacks=[ok], config=SwarmConfig(max_concurrency=7))
    await sw.aio_run_tasks_in_swarm(["work"] * len(xs), [Num(x=x) for x in xs])
    await sw.aio_run_no_wait()
    await sw.close_swarm()
    await manager.wait_idle()
    (done,) = seen.of("collect")
    assert done.mageflow_results == [x * 10 for x in xs]


async def test_failed_members_leave_none_and_one_success_means_done(
    manager: InMemoryTaskManager, seen: Seen
) -> None:
    ok = await mageflow.asign("collect")
    err = await mageflow.asign("on_error")
    sw = await mageflow.aswarm(success_callbacks=[ok], error_callbacks=[err])
    msgs = [Num(x=1, fail=True), Num(x=2), Num(x=3, fail=True)]
    await sw.aio_run_tasks_in_swarm(["work"] * 3, msgs)
    await sw.aio_run_no_wait()
    await sw.close_swarm()
    await manager.wait_idle()

    (done,) = seen.of("collect")
    assert done.mageflow_results == [None, 20, None]
    assert seen.of("on_error") == []
    assert await _status(sw.key) is SignatureStatus.DONE


@pytest.mark.parametrize("close_first", [True, False])
async def test_all_members_failed_without_threshold_fails_the_swarm(
    manager: InMemoryTaskManager, seen: Seen, raw: Raw, close_first: bool
) -> None:
    ok = await mageflow.asign("collect")
    err = await mageflow.asign("on_error", tag="all-failed")
    sw = await mageflow.aswarm(success_callbacks=[ok], error_callbacks=[err])
    await sw.aio_run_tasks_in_swarm(["work"] * 3, [Num(x=i, fail=True) for i in range(3)])
    await sw.aio_run_no_wait({"batch": 7})
    if close_first:
        await sw.close_swarm()
    await manager.wait_idle()
    if not close_first:
        await sw.close_swarm()
        await manager.wait_idle()

    assert seen.of("collect") == []
    # the swarm's own message (not one member's), whether close came first or last
    assert seen.of("on_error") == [{"batch": 7, "tag": "all-failed"}]
    assert await _status(sw.key) is SignatureStatus.FAILED
    assert await raw.status(ok.key) == "skipped"  # the branch not taken (issue 11.8)


async def test_failure_threshold_fires_error_callbacks_once_and_stops_new_members(
    manager: InMemoryTaskManager, seen: Seen, runtime: MageflowRuntime, raw: Raw
) -> None:
    ok = await mageflow.asign("collect")
    err = await mageflow.asign("on_error")
    sw = await mageflow.aswarm(
        success_callbacks=[ok],
        error_callbacks=[err],
        config=SwarmConfig(max_concurrency=1, stop_after_n_failures=2),
    )
    msgs = [Num(x=0), Num(x=1, fail=True), Num(x=2), Num(x=3, fail=True), Num(x=4), Num(x=5)]
    members = await sw.aio_run_tasks_in_swarm(["work"] * len(msgs), msgs)
    await sw.aio_run_no_wait()
    await sw.close_swarm()
    await manager.wait_idle()

    assert [m.x for m in seen.of("work")] == [0, 1, 2, 3]
    (got,) = seen.of("on_error")
    assert got["x"] == 3  # the member whose failure reached the threshold
    assert seen.of("collect") == []
    assert await _status(sw.key) is SignatureStatus.FAILED
    # queued members that will never start are skipped, in the same step
    assert [await raw.status(k) for k in members[4:]] == ["skipped", "skipped"]
    counters = await swarm_counters(runtime.store, sw.key)
    assert counters == {"admitted": 6, "running": 0, "succeeded": 2, "failed": 2}
    assert await raw.client.llen(runtime.store.keys.swarm_queue(sw.key)) == 0
    progress = await mageflow.progress(sw.key)
    assert (progress.queued, progress.done, progress.failed, progress.skipped) == (0, 2, 2, 2)
    with pytest.raises(SwarmClosedError):
        await sw.aio_run_in_swarm("work")


async def test_members_running_when_threshold_is_reached_still_finish(
    manager: InMemoryTaskManager, seen: Seen, runtime: MageflowRuntime
) -> None:
    err = await mageflow.asign("on_error")
    sw = await mageflow.aswarm(
        error_callbacks=[err], config=SwarmConfig(max_concurrency=4, stop_after_n_failures=1)
    )
    # x=0 fails while the other three are running: the gate holds all four
    # bodies until each has begun (a claimed member that has not begun when
    # its swarm fails is skipped instead)
    seen.gate = asyncio.Event()
    msgs = [Num(x=0, fail=True), Num(x=1), Num(x=2), Num(x=3), Num(x=4, fail=True), Num(x=5)]
    await sw.aio_run_tasks_in_swarm(["work"] * len(msgs), msgs)
    await sw.aio_run_no_wait()
    for _ in range(1000):
        if len(seen.of("work")) == 4:
            break
        await asyncio.sleep(0.01)
    seen.gate.set()
    await manager.wait_idle()

    assert sorted(m.x for m in seen.of("work")) == [0, 1, 2, 3]
    assert len(seen.of("on_error")) == 1
    assert await swarm_counters(runtime.store, sw.key) == {
        "admitted": 6,
        "running": 0,
        "succeeded": 3,
        "failed": 1,
    }


async def test_threshold_not_reached_ends_done(manager: InMemoryTaskManager, seen: Seen) -> None:
    ok = await mageflow.asign("collect")
    err = await mageflow.asign("on_error")
    sw = await mageflow.aswarm(
        success_callbacks=[ok],
        error_callbacks=[err],
        config=SwarmConfig(stop_after_n_failures=3),
        is_swarm_closed=False,
    )
    msgs = [Num(x=1, fail=True), Num(x=2), Num(x=3, fail=True)]
    await sw.aio_run_tasks_in_swarm(["work"] * 3, msgs)
    await sw.aio_run_no_wait()
    await sw.close_swarm()
    await manager.wait_idle()
    assert [m.mageflow_results for m in seen.of("collect")] == [[None, 20, None]]
    assert seen.of("on_error") == []


async def test_empty_closed_swarm_completes_with_an_empty_list(
    manager: InMemoryTaskManager, seen: Seen
) -> None:
    ok = await mageflow.asign("collect")
    sw = await mageflow.aswarm(success_callbacks=[ok], is_swarm_closed=True)
    await sw.aio_run_no_wait()
    await manager.wait_idle()
    assert [m.mageflow_results for m in seen.of("collect")] == [[]]
    assert await _status(sw.key) is SignatureStatus.DONE


async def test_closing_an_idle_running_swarm_completes_it(
    manager: InMemoryTaskManager, seen: Seen
) -> None:
    ok = await mageflow.asign("collect")
    sw = await mageflow.aswarm(tasks=["work"], success_callbacks=[ok])
    await sw.aio_run_no_wait(Num(x=5))
    await manager.wait_idle()
    assert seen.of("collect") == []
    await sw.close_swarm()
    await sw.close_swarm()  # closing twice is harmless
    await manager.wait_idle()
    assert [m.mageflow_results for m in seen.of("collect")] == [[50]]


# -- limits ----------------------------------------------------------------------------


async def test_adding_to_a_closed_swarm_raises(seen: Seen) -> None:
    sw = await mageflow.aswarm(tasks=["work"], is_swarm_closed=True)
    assert sw.is_swarm_closed
    with pytest.raises(SwarmClosedError, match="closed"):
        await sw.aio_run_in_swarm("work")
    with pytest.raises(SwarmClosedError):
        await sw.aio_run_tasks_in_swarm(["work"], [Num()])


async def test_adding_to_a_finished_swarm_raises(manager: InMemoryTaskManager, seen: Seen) -> None:
    sw = await mageflow.aswarm(tasks=["work"], is_swarm_closed=True)
    await sw.aio_run_no_wait(Num())
    await manager.wait_idle()
    with pytest.raises(SwarmClosedError):
        await sw.aio_run_in_swarm("work")


async def test_max_task_allowed(manager: InMemoryTaskManager, seen: Seen, raw: Raw) -> None:
    sw = await mageflow.aswarm(tasks=["work", "work"], config=SwarmConfig(max_task_allowed=3))
    await sw.aio_run_in_swarm("work")
    with pytest.raises(SwarmFullError, match="max_task_allowed=3"):
        await sw.aio_run_in_swarm("work")
    with pytest.raises(SwarmFullError):
        await sw.aio_run_tasks_in_swarm(["work", "work"], [Num(), Num()])
    members = await mageflow.get_runtime().store.members(sw)
    assert len(members) == 3
    with pytest.raises(SwarmFullError):
        await mageflow.aswarm(tasks=["work"] * 3, config=SwarmConfig(max_task_allowed=2))


async def test_a_rejected_add_admits_nothing(
    manager: InMemoryTaskManager, seen: Seen, runtime: MageflowRuntime
) -> None:
    taken = await mageflow.asign("work")
    other = await mageflow.aswarm(tasks=[taken])
    sw = await mageflow.aswarm()
    fresh = await mageflow.asign("work")
    with pytest.raises(MageflowValidationError, match="already belongs"):
        await sw.aio_run_in_swarm([fresh, taken])
    assert (await swarm_counters(runtime.store, sw.key))["admitted"] == 0
    assert await runtime.store.members(sw) == []
    assert await runtime.store.members(other) == [taken.key]


async def test_swarm_config_is_validated(seen: Seen) -> None:
    with pytest.raises(ValueError):
        SwarmConfig(max_concurrency=0)
    with pytest.raises(ValueError):
        SwarmConfig(stop_after_n_failures=0)


async def test_swarm_alias_and_reload(seen: Seen) -> None:
    sw = await mageflow.swarm(config=SwarmConfig(max_concurrency=2), tag="t")
    loaded = await mageflow.load_signature(sw.key)
    assert isinstance(loaded, mageflow.SwarmSignature)
    assert loaded.config.max_concurrency == 2
    assert loaded.kwargs == {"tag": "t"}
    assert loaded.is_swarm_closed is False
    await sw.close_swarm()
    loaded = await mageflow.load_signature(sw.key)
    assert isinstance(loaded, mageflow.SwarmSignature) and loaded.is_swarm_closed
