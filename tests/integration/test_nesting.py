"""Containers inside containers: results, kwargs and failures flow across levels."""

from __future__ import annotations

from typing import Any

import mageflow
import pytest
from mageflow import SignatureStatus, SwarmConfig
from mageflow.inmemory import InMemoryTaskManager, NonRetryableError

from tests.integration._helpers import Raw
from tests.integration.container_models import Loose, Num, Prev, Results

pytestmark = pytest.mark.usefixtures("runtime")


class Seen:
    def __init__(self) -> None:
        self.calls: dict[str, list[Any]] = {}

    def add(self, name: str, value: Any) -> None:
        self.calls.setdefault(name, []).append(value)

    def of(self, name: str) -> list[Any]:
        return self.calls.get(name, [])


@pytest.fixture
def seen(manager: InMemoryTaskManager) -> Seen:
    rec = Seen()

    @manager.task("start")
    async def start(msg: Num) -> int:
        rec.add("start", msg)
        if msg.fail:
            raise NonRetryableError("start failed")
        return msg.x + msg.add

    @manager.task("step")
    async def step(msg: Prev) -> int:
        rec.add("step", msg)
        if msg.fail:
            raise NonRetryableError("step failed")
        return int(msg.prev) + msg.add

    @manager.task("total")
    async def total(msg: Results) -> Any:
        rec.add("total", msg)
        return _flat_sum(msg.mageflow_results)

    @manager.task("collect")
    async def collect(msg: Results) -> None:
        rec.add("collect", msg)

    @manager.task("on_error")
    async def on_error(msg: Loose) -> None:
        rec.add("on_error", msg.model_dump())

    return rec


def _flat_sum(value: Any) -> int:
    if isinstance(value, list):
        return sum(_flat_sum(v) for v in value)
    return int(value or 0)


async def _status(key: str) -> SignatureStatus:
    sig = await mageflow.load_signature(key)
    assert sig is not None
    return sig.status


async def test_chains_inside_a_swarm(manager: InMemoryTaskManager, seen: Seen) -> None:
    ok = await mageflow.asign("collect")
    c1 = await mageflow.achain(["start", "step"])
    c2 = await mageflow.achain(["start", "step", "step"], add=10)
    sw = await mageflow.aswarm(tasks=[c1, "start", c2], success_callbacks=[ok])
    await sw.aio_run_no_wait(Num(x=1))
    await sw.close_swarm()
    await manager.wait_idle()

    (done,) = seen.of("collect")
    assert done.mageflow_results == [3, 2, 31]
    assert await _status(c1.key) is SignatureStatus.DONE
    assert await _status(c2.key) is SignatureStatus.DONE
    assert await _status(sw.key) is SignatureStatus.DONE


async def test_a_swarm_inside_a_chain_passes_its_list_on(
    manager: InMemoryTaskManager, seen: Seen
) -> None:
    ok = await mageflow.asign("collect")
    inner = await mageflow.aswarm(tasks=["step", "step", "step"], is_swarm_closed=True)
    ch = await mageflow.achain(["start", inner, "total"], success=[ok])
    await ch.aio_run_no_wait(Num(x=1, add=1))
    await manager.wait_idle()

    # each member received the first step's result (2) injected
    assert [m.prev for m in seen.of("step")] == [2, 2, 2]
    (tot,) = seen.of("total")
    assert tot.mageflow_results == [3, 3, 3]
    assert [m.mageflow_results for m in seen.of("collect")] == [9]


async def test_a_swarm_as_first_step_receives_the_chain_message(
    manager: InMemoryTaskManager, seen: Seen
) -> None:
    ok = await mageflow.asign("collect")
    inner = await mageflow.aswarm(tasks=["start", "start"], is_swarm_closed=True)
    ch = await mageflow.achain([inner, "total"], success=[ok])
    await ch.aio_run_no_wait(Num(x=5, add=1))
    await manager.wait_idle()
    assert [m.mageflow_results for m in seen.of("total")] == [[6, 6]]
    assert [m.mageflow_results for m in seen.of("collect")] == [12]


async def test_swarms_inside_a_swarm(manager: InMemoryTaskManager, seen: Seen) -> None:
    ok = await mageflow.asign("collect")
    a = await mageflow.aswarm(tasks=["start", "start"], is_swarm_closed=True, add=1)
    b = await mageflow.aswarm(tasks=["start"], is_swarm_closed=True, add=2)
    outer = await mageflow.aswarm(
        tasks=[a, "start", b], success_callbacks=[ok], config=SwarmConfig(max_concurrency=2)
    )
    await outer.aio_run_no_wait(Num(x=10, add=0))
    await outer.close_swarm()
    await manager.wait_idle()

    (done,) = seen.of("collect")
    assert done.mageflow_results == [[11, 11], 10, [12]]


async def test_three_levels(manager: InMemoryTaskManager, seen: Seen) -> None:
    ok = await mageflow.asign("collect")
    inner_chain = await mageflow.achain(["start", "step"])
    mid_swarm = await mageflow.aswarm(tasks=[inner_chain, "start"], is_swarm_closed=True)
    outer = await mageflow.achain(["start", "total"])
    top = await mageflow.aswarm(tasks=[mid_swarm, outer], success_callbacks=[ok])
    await top.aio_run_no_wait(Num(x=1))
    await top.close_swarm()
    await manager.wait_idle()
    (done,) = seen.of("collect")
    assert done.mageflow_results == [[3, 2], 2]


async def test_a_chain_inside_a_chain(manager: InMemoryTaskManager, seen: Seen) -> None:
    ok = await mageflow.asign("collect")
    inner = await mageflow.achain(["step", "step"], add=100)
    ch = await mageflow.achain(["start", inner, "step"], success=[ok])
    await ch.aio_run_no_wait(Num(x=0))
    await manager.wait_idle()
    assert [m.prev for m in seen.of("step")] == [1, 101, 201]
    assert [m.mageflow_results for m in seen.of("collect")] == [202]


async def test_outer_kwargs_reach_nested_members_and_inner_kwargs_win(
    manager: InMemoryTaskManager, seen: Seen
) -> None:
    inner = await mageflow.achain(["start", "step"], tag="inner")
    plain = await mageflow.achain(["start", "step"])
    sw = await mageflow.aswarm(tasks=[inner, plain], is_swarm_closed=True, tag="outer", add=3)
    await sw.aio_run_no_wait(Num(x=0))
    await manager.wait_idle()

    starts = sorted((m.tag, m.add) for m in seen.of("start"))
    steps = sorted((m.tag, m.add) for m in seen.of("step"))
    assert starts == [("inner", 3), ("outer", 3)]
    assert steps == [("inner", 3), ("outer", 3)]


async def test_failing_chain_inside_a_swarm_leaves_none(
    manager: InMemoryTaskManager, seen: Seen
) -> None:
    ok = await mageflow.asign("collect")
    chain_err = await mageflow.asign("on_error", tag="chain")
    bad = await mageflow.asign("step", fail=True)
    c1 = await mageflow.achain(["start", bad, "step"], error=[chain_err])
    sw = await mageflow.aswarm(tasks=[c1, "start"], success_callbacks=[ok], is_swarm_closed=True)
    await sw.aio_run_no_wait(Num(x=1))
    await manager.wait_idle()

    assert [m.mageflow_results for m in seen.of("collect")] == [[None, 2]]
    assert [e["tag"] for e in seen.of("on_error")] == ["chain"]
    assert await _status(c1.key) is SignatureStatus.FAILED


async def test_failing_swarm_inside_a_chain_fails_the_chain(
    manager: InMemoryTaskManager, seen: Seen, raw: Raw
) -> None:
    ok = await mageflow.asign("collect")
    err = await mageflow.asign("on_error", tag="outer")
    inner = await mageflow.aswarm(
        tasks=["step", "step"], is_swarm_closed=True, config=SwarmConfig(stop_after_n_failures=1)
    )
    ch = await mageflow.achain(["start", inner, "total"], success=[ok], error=[err], fail=False)
    # make the inner members fail through a kwarg update before the run
    for member in await mageflow.get_runtime().store.members(inner):
        sig = await mageflow.load_signature(member)
        assert sig is not None
        await sig.kwargs.aupdate(fail=True)
    await ch.aio_run_no_wait(Num(x=1))
    await manager.wait_idle()

    assert seen.of("total") == []
    assert seen.of("collect") == []
    assert [e["tag"] for e in seen.of("on_error")] == ["outer"]
    assert await _status(inner.key) is SignatureStatus.FAILED
    assert await _status(ch.key) is SignatureStatus.FAILED
    assert await raw.status(ch.tasks[2]) == "skipped"  # never reached


async def test_failing_inner_swarm_counts_as_a_failed_outer_member(
    manager: InMemoryTaskManager, seen: Seen
) -> None:
    ok = await mageflow.asign("collect")
    err = await mageflow.asign("on_error")
    bad = await mageflow.asign("start", fail=True)
    inner = await mageflow.aswarm(tasks=[bad], is_swarm_closed=True)
    outer = await mageflow.aswarm(
        tasks=[inner, "start"], success_callbacks=[ok], error_callbacks=[err]
    )
    await outer.aio_run_no_wait(Num(x=4))
    await outer.close_swarm()
    await manager.wait_idle()
    assert [m.mageflow_results for m in seen.of("collect")] == [[None, 5]]
    assert seen.of("on_error") == []
    assert await _status(inner.key) is SignatureStatus.FAILED


async def test_open_inner_swarm_holds_the_outer_container(
    manager: InMemoryTaskManager, seen: Seen
) -> None:
    ok = await mageflow.asign("collect")
    inner = await mageflow.aswarm(tasks=["step"])  # not closed
    ch = await mageflow.achain(["start", inner], success=[ok])
    await ch.aio_run_no_wait(Num(x=1))
    await manager.wait_idle()
    assert seen.of("collect") == []
    assert await _status(ch.key) is SignatureStatus.ACTIVE
    assert await _status(inner.key) is SignatureStatus.ACTIVE

    await inner.aio_run_in_swarm("step")  # added while running: gets the injected value
    await inner.close_swarm()
    await manager.wait_idle()
    assert [m.mageflow_results for m in seen.of("collect")] == [[3, 3]]
    assert await _status(ch.key) is SignatureStatus.DONE


async def test_nested_container_callbacks_fire_once_each(
    manager: InMemoryTaskManager, seen: Seen
) -> None:
    inner_ok = await mageflow.asign("collect", tag="inner")
    outer_ok = await mageflow.asign("collect", tag="outer")
    inner = await mageflow.achain(["start", "step"], success=[inner_ok])
    outer = await mageflow.aswarm(tasks=[inner], success_callbacks=[outer_ok])
    await outer.aio_run_no_wait(Num(x=1))
    await outer.close_swarm()
    await manager.wait_idle()
    got = sorted((m.tag, m.mageflow_results) for m in seen.of("collect"))
    assert got == [("inner", 3), ("outer", [3])]
