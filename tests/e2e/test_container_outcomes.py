"""Chains and swarms on a real engine: result, progress, queries, clone, cancel."""

from __future__ import annotations

import asyncio

import mageflow
import pytest
from mageflow import SignatureCanceledError, SignatureStatus, SwarmConfig

from tests.e2e._worker import wait_until
from tests.e2e.mf_container_app import ContainerApp
from tests.e2e.test_containers import runs_for, work_members

pytestmark = pytest.mark.e2e


async def test_chain_result_progress_query_and_clone(capp: ContainerApp, tag: str) -> None:
    chain = await mageflow.achain(
        [capp.name("start"), capp.name("step"), capp.name("step")],
        tag=tag,
        add=2,
        task_identifiers={"e2e_tag": tag},
    )
    assert (await chain.progress()).current_step is None
    assert await chain.aio_run({"x": 1}, timeout=90) == 7  # 1 + 2 + 2 + 2
    p = await chain.progress()
    assert (p.admitted, p.done, p.current_step, p.status) == (3, 3, 2, "done")
    found = await mageflow.list_signatures(identifiers={"e2e_tag": tag})
    assert [s.key for s in found] == [chain.key]
    copy = await chain.clone()
    assert copy.key != chain.key and copy.tasks != chain.tasks
    assert await copy.aio_run({"x": 10}, timeout=90) == 16


async def test_swarm_result_progress_and_cancel(capp: ContainerApp, tag: str) -> None:
    members = await work_members(capp, 4, tag=tag)
    swarm = await mageflow.aswarm(
        tasks=members, config=SwarmConfig(max_concurrency=2), is_swarm_closed=True, tag=tag
    )
    assert await swarm.aio_run({"seconds": 0.2}, timeout=90) == [0, 10, 20, 30]
    p = await swarm.progress()
    assert (p.admitted, p.done, p.running, p.queued) == (4, 4, 0, 0)

    slow = await work_members(capp, 3, tag=tag, seconds=45)
    running = await mageflow.aswarm(
        tasks=slow, config=SwarmConfig(max_concurrency=2), is_swarm_closed=True, tag=tag
    )
    await running.aio_run_no_wait({})

    async def two_running() -> bool:
        got = await running.progress()
        return got.running == 2 and got.queued == 1

    await wait_until(two_running, timeout=60, message="two members running")
    waiter = asyncio.create_task(running.aio_result(timeout=60))
    await running.cancel()
    with pytest.raises(SignatureCanceledError):
        await waiter
    for m in slow:
        loaded = await mageflow.load_signature(m.key)
        assert loaded is not None and loaded.status == SignatureStatus.CANCELED

    seen: list[tuple[str, str]] = []

    async def engine_runs_cancelled() -> bool:
        seen[:] = [(m.key, str(r.status)) for m in slow for r in await runs_for(capp, m.key)]
        return len(seen) == 2 and all(status.endswith("CANCELLED") for _, status in seen)

    try:
        await wait_until(engine_runs_cancelled, timeout=60, message="member runs cancelled")
    except TimeoutError as exc:
        raise AssertionError(f"member runs in the engine: {seen}") from exc
