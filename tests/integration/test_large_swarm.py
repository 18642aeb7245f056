"""A large swarm on real Redis with the in-memory engine (issue 10).

3 000 members by default (three chunks of ``results_chunk`` results);
``MAGEFLOW_LARGE_SWARM=100000`` runs the issue's full size (several minutes
on 2 cores, see docs/testing.md). Every member
returns a 1 KB result; the success callback must receive all of them, in the
order members were added. Server memory per member is printed (``-s``).
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

SIZE = int(os.environ.get("MAGEFLOW_LARGE_SWARM", "3000"))


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
    print(
        f"\n{SIZE} members: created in {created - started:.2f} s, ran in "
        f"{time.monotonic() - created:.1f} s; server memory per member: "
        f"{(admitted - before) / SIZE:.0f} B admitted, "
        f"{(finished - before) / SIZE:.0f} B finished (with its 1 KB result)"
    )
