"""A large swarm on real Redis with the in-memory engine (issue 10).

100 000 members, the issue's size (a few minutes on 2 cores, see
docs/testing.md); ``MAGEFLOW_LARGE_SWARM=3000`` runs a smaller one while
working on something else. Every member returns a 1 KB result; the success
callback must receive all of them, in the order members were added. Server
memory per member is measured, printed (``-s``) and held to a bound.
"""

from __future__ import annotations

import os
import time

import mageflow
import pytest
import redis.asyncio as aioredis
from mageflow import ReturnValue, SwarmConfig
from mageflow.inmemory import InMemoryTaskManager
from pydantic import BaseModel

pytestmark = pytest.mark.usefixtures("runtime")

SIZE = int(os.environ.get("MAGEFLOW_LARGE_SWARM", "100000"))


class Member(BaseModel):
    i: int


class All(BaseModel):
    results: ReturnValue[list[str]]


def result_of(i: int) -> str:
    return f"{i:08d}" + "r" * 1016  # 1 KB


async def _used(redis_client: aioredis.Redis) -> int:
    return int((await redis_client.info("memory"))["used_memory"])


async def test_large_swarm_delivers_every_result_in_order(
    manager: InMemoryTaskManager, redis_client: aioredis.Redis
) -> None:
    got: list[list[str]] = []

    @manager.task("large-member")
    async def member(msg: Member) -> str:
        return result_of(msg.i)

    @manager.task("large-collect")
    async def collect(msg: All) -> None:
        got.append(msg.results)

    started = time.monotonic()
    before = await _used(redis_client)
    cb = await mageflow.asign("large-collect")
    swarm = await mageflow.aswarm(success_callbacks=[cb], config=SwarmConfig(max_concurrency=50))
    await swarm.aio_run_tasks_in_swarm(["large-member"] * SIZE, [Member(i=i) for i in range(SIZE)])
    admitted = await _used(redis_client)
    created = time.monotonic()
    await swarm.aio_run_no_wait()
    await swarm.close_swarm()
    await manager.wait_idle(timeout=max(120.0, SIZE / 50))
    finished = await _used(redis_client)

    assert len(got) == 1
    results = got[0]
    assert len(results) == SIZE
    assert all(r == result_of(i) for i, r in enumerate(results))
    per_admitted, per_finished = (admitted - before) / SIZE, (finished - before) / SIZE
    print(
        f"\n{SIZE} members: created in {created - started:.2f} s, ran in "
        f"{time.monotonic() - created:.1f} s; server memory per member: "
        f"{per_admitted:.0f} B admitted, {per_finished:.0f} B finished (with its 1 KB result)"
    )
    # measured at 429 B and 3 456 B (benchmarks/README.md, "The large swarm"):
    # bounds with room for allocator noise, low enough to catch a member that
    # keeps a copy of its result or its message twice
    if SIZE >= 10_000:
        assert per_admitted < 1_500
        assert per_finished < 6_000
