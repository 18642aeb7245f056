"""Dispatches lost between the atomic claim and the engine are recovered.

Every dispatch is claimed in Redis first (listed in the pending index) and
sent afterwards; ``recover()`` re-sends claims whose run never arrived.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import mageflow
import pytest
from mageflow import EngineError, MageflowRuntime, SignatureStatus, SwarmConfig
from mageflow.engine import DispatchRequest, DispatchResult
from mageflow.inmemory import InMemoryTaskManager
from pydantic import BaseModel

from tests.integration.models import DefaultFieldCallback as ResultOnly

NOW = timedelta(0)


class Item(BaseModel):
    n: int = 0


class FlakyEngine(InMemoryTaskManager):
    """Refuses the next ``fail_next`` dispatches, like an engine that is briefly down."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_next = 0
        self.refused: list[str] = []

    async def dispatch(self, request: DispatchRequest) -> DispatchResult:
        if self.fail_next > 0:
            self.fail_next -= 1
            self.refused.append(request.signature_key)
            raise ConnectionError("engine unavailable")
        return await super().dispatch(request)


@pytest.fixture
def manager() -> InMemoryTaskManager:
    return FlakyEngine()


@pytest.fixture
def engine(manager: InMemoryTaskManager) -> FlakyEngine:
    assert isinstance(manager, FlakyEngine)
    return manager


async def pending(runtime: MageflowRuntime) -> list[str]:
    return list(await runtime.store.client.zrange(runtime.store.keys.pending, 0, -1))


def register(engine: FlakyEngine) -> dict[str, list[Any]]:
    seen: dict[str, list[Any]] = {"work": [], "done": []}

    @engine.task("work", input_validator=Item)
    async def work(msg: Item) -> int:
        seen["work"].append(msg.n)
        return msg.n * 10

    @engine.task("done", input_validator=ResultOnly)
    async def done(msg: ResultOnly) -> None:
        seen["done"].append(msg.mageflow_results)

    return seen


async def test_nothing_pending_after_flows_complete(
    runtime: MageflowRuntime, engine: FlakyEngine
) -> None:
    seen = register(engine)
    cb = await mageflow.asign("done")
    sig = await mageflow.asign("work", success_callbacks=[cb])
    await sig.aio_run_no_wait(Item(n=1))
    swarm = await mageflow.aswarm(
        tasks=["work"] * 3, is_swarm_closed=True, config=SwarmConfig(max_concurrency=2)
    )
    await swarm.aio_run_no_wait(Item(n=2))
    await engine.wait_idle()
    assert sorted(seen["work"]) == [1, 2, 2, 2]  # the engine runs them concurrently
    assert await pending(runtime) == []
    assert await runtime.recover(older_than=NOW) == 0


async def test_refused_task_dispatch_is_recovered(
    runtime: MageflowRuntime, engine: FlakyEngine
) -> None:
    seen = register(engine)
    sig = await mageflow.asign("work")
    engine.fail_next = 1
    with pytest.raises(EngineError):
        await sig.aio_run_no_wait(Item(n=5))
    assert await pending(runtime) == [runtime.store.keys.sig(sig.key)]
    # too young to be recovered yet
    assert await runtime.recover(older_than=timedelta(minutes=5)) == 0
    assert await mageflow.recover(older_than=NOW) == 1
    await engine.wait_idle()
    assert seen["work"] == [5]
    assert (await mageflow.load_signature(sig.key)).status is SignatureStatus.DONE
    assert await pending(runtime) == []


async def test_refused_swarm_start_is_recovered(
    runtime: MageflowRuntime, engine: FlakyEngine
) -> None:
    seen = register(engine)
    cb = await mageflow.asign("done")
    swarm = await mageflow.aswarm(
        tasks=["work"] * 4,
        success_callbacks=[cb],
        is_swarm_closed=True,
        config=SwarmConfig(max_concurrency=2),
    )
    engine.fail_next = 2
    with pytest.raises(EngineError):
        await swarm.aio_run_no_wait(Item(n=3))
    assert len(await pending(runtime)) == 2  # both admitted members are claimed
    assert await runtime.recover(older_than=NOW) == 2
    await engine.wait_idle()
    assert seen["work"] == [3, 3, 3, 3]
    assert seen["done"] == [[30, 30, 30, 30]]
    assert await pending(runtime) == []


async def test_lost_callback_without_redelivery_is_recovered(
    runtime: MageflowRuntime, engine: FlakyEngine
) -> None:
    # retries=0: the engine will not redeliver the finished run, so the outbox
    # on the run cannot be drained; the pending index still has the callback.
    seen = register(engine)
    cb = await mageflow.asign("done")
    sig = await mageflow.asign("work", success_callbacks=[cb])
    await sig.aio_run_no_wait(Item(n=7))
    engine.fail_next = 1  # the callback's dispatch, right after FINISH
    await engine.wait_idle()
    assert engine.refused == [cb.key]
    assert seen["done"] == []
    assert await runtime.recover(older_than=NOW) == 1
    await engine.wait_idle()
    assert seen["done"] == [70]


async def test_recovering_a_dispatch_that_did_arrive_runs_nothing_twice(
    runtime: MageflowRuntime, engine: FlakyEngine
) -> None:
    seen = register(engine)
    sig = await mageflow.asign("work")
    await sig.aio_run_no_wait(Item(n=9))
    # a recoverer that sees the claim before the run arrived re-sends it
    due = await runtime.store.due_for_reconcile(0, 10)
    assert [(d.key, d.claimed) for d in due] == [(sig.key, True)]
    entries = [d.entry for d in due if d.entry is not None]
    await runtime.dispatch_outbox(entries)
    await engine.wait_idle()
    assert seen["work"] == [9]
    skipped = [r for r in engine.runs.values() if r.status.startswith("skipped")]
    assert len(skipped) == 1
    assert await pending(runtime) == []
