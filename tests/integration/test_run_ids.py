"""Engine run ids of a worker's dispatches ride on its next BEGIN or FINISH (issue 10).

A completion costs BEGIN + FINISH; the run ids of what it dispatched (next
chain step, swarm members, callbacks) are recorded by whichever BEGIN or
FINISH of the same worker runs next, or, when none comes within
``RunIds.linger``, by one ``sent`` script for all of them. The reconciler
reads them as before.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import mageflow
import pytest
from mageflow import MageflowRuntime, SwarmConfig
from mageflow._store.keys import F
from mageflow.engine import DispatchRequest, DispatchResult
from mageflow.inmemory import InMemoryTaskManager
from pydantic import BaseModel

from tests.integration._helpers import Raw, eventually


class Item(BaseModel):
    n: int = 0


class Engine(InMemoryTaskManager):
    """The in-memory engine; runs of the tasks in ``queued_only`` stay queued."""

    def __init__(self) -> None:
        super().__init__()
        self.queued_only: set[str] = set()

    async def dispatch(self, request: DispatchRequest) -> DispatchResult:
        if request.task_name not in self.queued_only:
            return await super().dispatch(request)
        self.hold = True
        try:
            return await super().dispatch(request)
        finally:
            self.hold = False


@pytest.fixture
def manager() -> InMemoryTaskManager:
    return Engine()


@pytest.fixture
def engine(manager: InMemoryTaskManager) -> Engine:
    assert isinstance(manager, Engine)
    return manager


@pytest.fixture
def scripts(runtime: MageflowRuntime, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Script calls by name (each one round trip)."""
    calls: Counter[str] = Counter()
    store = runtime.store
    inner = store._call

    async def counted(name: str, *args: Any, **kwargs: Any) -> list[Any]:
        calls[name] += 1
        return await inner(name, *args, **kwargs)

    monkeypatch.setattr(store, "_call", counted)
    return calls


def tasks(engine: Engine) -> None:
    @engine.task("work", input_validator=Item)
    async def work(msg: Item) -> int:
        return msg.n

    @engine.task("later", input_validator=Item)
    async def later(msg: Item) -> int:
        return msg.n


async def queued_step(runtime: MageflowRuntime, engine: Engine, linger: float) -> tuple[str, str]:
    """A chain's first step ran; the engine holds its second step's run queued.

    Returns the second step's key and the id of its queued run.
    """
    tasks(engine)
    engine.queued_only.add("later")
    runtime.run_ids.linger = linger
    chain = await mageflow.achain(["work", "later"])
    await chain.aio_run_no_wait(Item(n=1))
    await engine.wait_idle()
    step2 = chain.tasks[1]
    (run,) = [r for r in engine.runs.values() if r.signature_key == step2]
    return step2, run.run_id


async def test_run_ids_ride_on_the_next_begin_or_finish(
    runtime: MageflowRuntime, engine: Engine, raw: Raw, scripts: Counter[str]
) -> None:
    # no write of their own in this test
    step2, run_id = await queued_step(runtime, engine, linger=60.0)
    # the first step's FINISH claimed the second and the engine queued its run;
    # its id waits for the worker's next script call
    assert len(runtime.run_ids) == 1
    assert F.engine_run not in await raw.hash(step2)
    # any run of this worker records it on its way: here its BEGIN
    other = await mageflow.asign("work")
    await other.aio_run_no_wait(Item(n=2))
    await engine.wait_idle()
    assert (await raw.hash(step2))[F.engine_run] == run_id
    assert len(runtime.run_ids) == 0
    # only the two callers' own dispatches (the chain's start, the other run)
    # wrote theirs at once; the worker's dispatch cost no script of its own
    assert scripts["sent"] == 2
    # and the reconciler finds it there: the queued run is left alone
    report = await runtime.reconcile(older_than=timedelta(0))
    assert report.left == 1 and report.resent == 0


async def test_run_ids_no_call_took_are_written_after_linger(
    runtime: MageflowRuntime, engine: Engine, raw: Raw, scripts: Counter[str]
) -> None:
    step2, run_id = await queued_step(runtime, engine, linger=0.05)

    async def recorded() -> bool:
        return (await raw.hash(step2)).get(F.engine_run) == run_id

    await eventually(recorded, what="the run id")
    assert scripts["sent"] == 2  # the chain's start, then the worker's id after linger
    assert len(runtime.run_ids) == 0


async def test_a_swarm_completion_costs_begin_and_finish_only(
    runtime: MageflowRuntime, engine: Engine, raw: Raw, scripts: Counter[str]
) -> None:
    tasks(engine)
    runtime.run_ids.linger = 60.0
    members = await mageflow.asign_many("work", [{"n": i} for i in range(40)])
    swarm = await mageflow.aswarm(
        tasks=members, config=SwarmConfig(max_concurrency=4), is_swarm_closed=True
    )
    before = Counter(scripts)
    await swarm.aio_run_no_wait()
    await engine.wait_idle()
    assert await raw.status(swarm.key) == "done"
    used = Counter(scripts)
    used.subtract(before)
    # the start (one advance, its 4 run ids written at once), then per member BEGIN + FINISH
    assert used["begin"] == 40 and used["finish"] == 40
    assert used["sent"] == 1
    # the last members' FINISH claimed nothing: nothing is left to record
    assert len(runtime.run_ids) == 0


async def test_run_ids_a_failed_call_took_are_kept_for_the_next(
    runtime: MageflowRuntime, engine: Engine, raw: Raw, monkeypatch: pytest.MonkeyPatch
) -> None:
    step2, run_id = await queued_step(runtime, engine, linger=60.0)
    assert len(runtime.run_ids) == 1
    store = runtime.store
    inner = store.begin
    failed: list[int] = []

    async def failing_once(*args: Any, **kwargs: Any) -> Any:
        if not failed:
            failed.append(len(kwargs.get("sent", ())))
            raise RuntimeError("the connection broke")
        return await inner(*args, **kwargs)

    monkeypatch.setattr(store, "begin", failing_once)
    other = await mageflow.asign("work")
    await other.aio_run_no_wait(Item(n=2))
    await engine.wait_idle()
    assert failed == [1]
    assert len(runtime.run_ids) == 1
    await runtime.flush()
    assert (await raw.hash(step2))[F.engine_run] == run_id
