"""Smoke test of the real Hatchet engine: plain hatchet-sdk worker, no MageFlow code."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hatchet_sdk import Hatchet, V1TaskStatus
from hatchet_sdk.exceptions import FailedTaskRunExceptionGroup

from tests.e2e._engine import Engine, start_engine_or_skip
from tests.e2e._worker import WorkerProcess, wait_until
from tests.e2e.smoke_worker import AddInput, SleepInput, SmokeTasks, declare

pytestmark = pytest.mark.e2e

SMOKE_WORKER = Path(__file__).with_name("smoke_worker.py")


@pytest.fixture(scope="session")
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    # share the session engine of a conftest (fixture `hatchet_engine`) if there is one
    try:
        shared: Engine = request.getfixturevalue("hatchet_engine")
    except pytest.FixtureLookupError:
        pass
    else:
        yield shared
        return
    engine = start_engine_or_skip()
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def smoke_worker(engine: Engine) -> Iterator[WorkerProcess]:
    with WorkerProcess(str(SMOKE_WORKER), engine.worker_env()) as worker:
        yield worker


@pytest.fixture(scope="module")
def hatchet(engine: Engine) -> Hatchet:
    return engine.client()


@pytest.fixture(scope="module")
def tasks(hatchet: Hatchet, smoke_worker: WorkerProcess) -> SmokeTasks:
    return declare(hatchet)


async def test_aio_run_returns_task_output(tasks: SmokeTasks) -> None:
    result = await tasks.add.aio_run(AddInput(a=2, b=3))
    assert result["sum"] == 5
    assert result["retry_count"] == 0


async def test_dispatch_without_waiting_then_query_rest_api(
    tasks: SmokeTasks, hatchet: Hatchet
) -> None:
    smoke_id = uuid.uuid4().hex
    ref = tasks.add.run(
        AddInput(a=4, b=5), wait_for_result=False, additional_metadata={"smoke_id": smoke_id}
    )
    result = await ref.aio_result()
    assert result["sum"] == 9
    assert result["metadata"]["smoke_id"] == smoke_id

    # the synchronous path polls GetRunDetails instead of streaming
    assert (await asyncio.to_thread(ref.result))["sum"] == 9

    # the REST status comes from the engine's OLAP tables, which are written
    # asynchronously: the result can be delivered a moment before it reads COMPLETED
    async def completed() -> bool:
        return await hatchet.runs.aio_get_status(ref.workflow_run_id) == V1TaskStatus.COMPLETED

    assert await wait_until(completed, timeout=30, message="REST status COMPLETED")

    async def listed() -> list[str]:
        runs = await hatchet.runs.aio_list(additional_metadata={"smoke_id": smoke_id})
        return [r.metadata.id for r in runs.rows]

    assert await wait_until(listed, timeout=30, message="run listed by its metadata")


async def test_failing_task_raises(tasks: SmokeTasks) -> None:
    with pytest.raises(FailedTaskRunExceptionGroup) as excinfo:
        await tasks.fail.aio_run(AddInput(a=1, b=1))
    assert "smoke failure for 1+1" in str(excinfo.value.exceptions[0])


async def test_cancel_running_task(tasks: SmokeTasks, hatchet: Hatchet) -> None:
    ref = await tasks.sleep.aio_run(SleepInput(seconds=120), wait_for_result=False)
    run_id = ref.workflow_run_id

    async def status_is(expected: V1TaskStatus) -> bool:
        return await hatchet.runs.aio_get_status(run_id) == expected

    await wait_until(lambda: status_is(V1TaskStatus.RUNNING), timeout=30, message="RUNNING")
    await hatchet.runs.aio_cancel(run_id)
    await wait_until(lambda: status_is(V1TaskStatus.CANCELLED), timeout=30, message="CANCELLED")


async def test_worker_survives_crash_and_restart(
    tasks: SmokeTasks, smoke_worker: WorkerProcess
) -> None:
    first_pid = smoke_worker.pid
    smoke_worker.kill()
    assert not smoke_worker.running
    await asyncio.to_thread(smoke_worker.start)
    assert smoke_worker.pid != first_pid
    result = await tasks.add.aio_run(AddInput(a=20, b=22))
    assert result["sum"] == 42
