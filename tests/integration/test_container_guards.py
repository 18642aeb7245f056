"""Guards that keep chains and swarms consistent when callers misuse members."""

from __future__ import annotations

from typing import Any

import mageflow
import pytest
from mageflow import (
    InvalidTransitionError,
    MageflowRuntime,
    MageflowValidationError,
    SignatureStatus,
    SwarmConfig,
)
from mageflow.inmemory import InMemoryTaskManager
from pydantic import BaseModel

from tests.integration._helpers import swarm_counters


class Num(BaseModel):
    n: int = 0


@pytest.fixture
def seen(manager: InMemoryTaskManager) -> list[Any]:
    calls: list[Any] = []

    @manager.task("num", input_validator=Num)
    async def num(msg: Num) -> int:
        calls.append(msg.n)
        return msg.n

    return calls


async def test_a_member_listed_twice_is_rejected(runtime: MageflowRuntime, seen: list[Any]) -> None:
    step = await mageflow.asign("num")
    with pytest.raises(MageflowValidationError, match="listed twice"):
        await mageflow.achain([step, step])
    swarm = await mageflow.aswarm()
    with pytest.raises(MageflowValidationError, match="listed twice"):
        await swarm.aio_run_in_swarm([step, step])
    assert await swarm_counters(runtime.store, swarm.key) == {
        "admitted": 0,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
    }


async def test_a_member_does_not_run_on_its_own(
    runtime: MageflowRuntime, seen: list[Any], manager: InMemoryTaskManager
) -> None:
    member = await mageflow.asign("num")
    swarm = await mageflow.aswarm(tasks=[member], config=SwarmConfig(max_concurrency=1))
    with pytest.raises(InvalidTransitionError, match="member of"):
        await member.aio_run_no_wait(Num(n=1))
    await swarm.close_swarm()
    await swarm.aio_run_no_wait(Num(n=2))
    await manager.wait_idle()
    assert seen == [2]
    assert (await mageflow.load_signature(swarm.key)).status is SignatureStatus.DONE


async def test_a_member_of_a_running_container_is_not_removed_alone(
    runtime: MageflowRuntime, seen: list[Any], manager: InMemoryTaskManager
) -> None:
    first, second = await mageflow.asign("num"), await mageflow.asign("num")
    chain = await mageflow.achain([first, second])
    with pytest.raises(InvalidTransitionError, match="belongs to"):
        await second.remove()
    assert await mageflow.load_signature(second.key) is not None
    await chain.aio_run_no_wait(Num(n=3))
    await manager.wait_idle()
    assert (await mageflow.load_signature(chain.key)).status is SignatureStatus.DONE
    await second.remove()  # the chain finished: now it may go
    assert await mageflow.load_signature(second.key) is None


async def test_a_chain_whose_next_step_vanished_fails(
    runtime: MageflowRuntime, seen: list[Any], manager: InMemoryTaskManager
) -> None:
    first, second = await mageflow.asign("num"), await mageflow.asign("num")
    chain = await mageflow.achain([first, second])
    # the step expired or was deleted behind the store's back
    await runtime.store.client.delete(runtime.store.keys.sig(second.key))
    await chain.aio_run_no_wait(Num(n=4))
    await manager.wait_idle()
    assert (await mageflow.load_signature(chain.key)).status is SignatureStatus.FAILED


async def test_an_interrupted_chain_does_not_finish_until_resumed(
    runtime: MageflowRuntime, manager: InMemoryTaskManager
) -> None:
    from mageflow import ReturnValue, _lifecycle
    from thirdmagic.status import LifecycleEvent

    class Prev(BaseModel):
        prev: ReturnValue[int]

    holder: dict[str, str] = {}
    finished: list[Any] = []

    @manager.task("first", input_validator=Num)
    async def first(msg: Num) -> int:
        return msg.n

    @manager.task("last")
    async def last(msg: dict[str, Any]) -> int:
        # the chain is interrupted while its last step is finishing (only the
        # container so far: apply() reaches the members a moment later)
        await _lifecycle._apply_one(
            runtime.store, runtime, holder["chain"], LifecycleEvent.INTERRUPT
        )
        return int(msg["mageflow_results"]) + 1

    @manager.task("finished")
    async def on_done(msg: dict[str, Any]) -> None:
        finished.append(msg["mageflow_results"])

    cb = await mageflow.asign("finished")
    chain = await mageflow.achain(["first", "last"], success=[cb])
    holder["chain"] = chain.key
    await chain.aio_run_no_wait(Num(n=1))
    await manager.wait_idle()
    assert (await mageflow.load_signature(chain.key)).status is SignatureStatus.INTERRUPTED
    assert finished == []
    await mageflow.resume(chain.key)
    await manager.wait_idle()
    assert (await mageflow.load_signature(chain.key)).status is SignatureStatus.DONE
    assert finished == [2]


async def test_the_holder_of_a_locked_chain_may_remove_it(
    runtime: MageflowRuntime, seen: list[Any]
) -> None:
    chain = await mageflow.achain(["num", "num"])
    async with mageflow.lock_task(chain.key):
        await chain.remove()
    assert await mageflow.load_signature(chain.key) is None
    for step in chain.tasks:
        assert await mageflow.load_signature(step) is None
