"""mageflow.testing for users: the in-memory fixture, waiting for a flow, fault injection."""

from __future__ import annotations

import mageflow
import pytest
import redis.asyncio as aioredis
from mageflow import MageflowConfig, ReturnValue, SignatureStatus
from mageflow.testing import (
    Faults,
    FaultyTaskManager,
    InMemoryFlow,
    wait_for_signature,
)
from pydantic import BaseModel


class Num(BaseModel):
    n: ReturnValue[int]


class Total(BaseModel):
    total: ReturnValue[int]


def _flow_tasks(flow: InMemoryFlow, sink: list[str]) -> None:
    @flow.manager.task("add-one", input_validator=Num)
    async def add_one(msg: Num) -> int:
        sink.append(f"add-one:{msg.n}")
        return msg.n + 1

    @flow.manager.task("report", input_validator=Total)
    async def report(msg: Total) -> None:
        sink.append(f"report:{msg.total}")


async def _run_chain(flow: InMemoryFlow, sink: list[str]) -> None:
    _flow_tasks(flow, sink)
    done = await mageflow.asign("report")
    chain = await mageflow.achain(["add-one", "add-one", "add-one"], success=[done])
    await chain.aio_run_no_wait({"n": 0})
    ended = await wait_for_signature(chain.key, timeout=10)
    assert ended.status is SignatureStatus.DONE
    await wait_for_signature(done.key, timeout=10)
    await flow.wait_idle()


async def test_the_in_memory_fixture_runs_a_flow(mageflow_in_memory: InMemoryFlow) -> None:
    sink: list[str] = []
    await _run_chain(mageflow_in_memory, sink)
    assert sink == ["add-one:0", "add-one:1", "add-one:2", "report:3"]
    assert mageflow.get_runtime() is mageflow_in_memory.runtime


async def test_wait_for_signature_names_the_last_status_on_timeout(
    mageflow_in_memory: InMemoryFlow,
) -> None:
    sig = await mageflow.asign("never-run")
    with pytest.raises(TimeoutError, match="last status: pending"):
        await wait_for_signature(sig.key, timeout=0.2)


@pytest.mark.parametrize(
    "faults",
    [Faults(deliver_twice=True), Faults(dispatch_twice=True)],
    ids=["deliver_twice", "dispatch_twice"],
)
async def test_duplicate_runs_change_nothing(
    faults: Faults, redis_client: aioredis.Redis, key_prefix: str
) -> None:
    manager = FaultyTaskManager(faults)
    sink: list[str] = []
    async with InMemoryFlow(
        redis_client, config=MageflowConfig(key_prefix=key_prefix), manager=manager
    ) as flow:
        await _run_chain(flow, sink)
    assert sink == ["add-one:0", "add-one:1", "add-one:2", "report:3"]
    assert manager.deliveries >= 8  # every step and the callback at least twice


@pytest.mark.parametrize("step", [1, 2, 4])
async def test_a_crash_after_step_k_repeats_only_that_body(
    step: int, redis_client: aioredis.Redis, key_prefix: str
) -> None:
    manager = FaultyTaskManager(Faults(crash_at_step=step))
    sink: list[str] = []
    async with InMemoryFlow(
        redis_client, config=MageflowConfig(key_prefix=key_prefix), manager=manager
    ) as flow:
        await _run_chain(flow, sink)
    clean = ["add-one:0", "add-one:1", "add-one:2", "report:3"]
    # the crashed step's body ran twice (at-least-once); the flow's outcome is unchanged
    assert sink == [*clean[:step], *clean[step - 1 :]]
    assert manager.crashes == 1
