"""The worker's own cost per swarm member, with the engine taken out.

Run from the repository root::

    uv run python benchmarks/worker_bench.py [--members N] [--cap C] [--rounds R]

A swarm of ``N`` no-op members (``max_concurrency`` ``C``) runs on the
in-memory engine (``mageflow.inmemory``) against a real Redis (``REDIS_URL``,
a testcontainer or the bundled valkey, as in ``tests/_redis.py``). Everything
a Hatchet worker does for a member besides the engine's own work happens in
this one process: BEGIN, the body, FINISH, the trigger of the next member and
the recording of its run id. Per member it prints this process' CPU time, the
Redis server's CPU time and the wall time, beside a floor measured the same
way: two ``EVALSHA`` of a no-op script per member through redis-py at the
same concurrency (the two round trips every member needs at least).

On a real engine the same work is one part of the worker's CPU
(``container_bench.py`` prints the whole tree's); this benchmark isolates it
so a change to the worker path can be measured without the engine's noise.
Rounds alternate the workloads; the median of each is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import mageflow  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
from mageflow import MageflowConfig, SwarmConfig  # noqa: E402
from mageflow.inmemory import InMemoryTaskManager  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from benchmarks._common import drop_prefix, table  # noqa: E402


class Member(BaseModel):
    i: int


async def _server_cpu(stats: aioredis.Redis) -> float:
    info = await stats.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _timed(stats: aioredis.Redis, go: Any) -> tuple[float, float, float]:
    s0, c0, t0 = await _server_cpu(stats), time.process_time(), time.perf_counter()
    await go()
    t1, c1, s1 = time.perf_counter(), time.process_time(), await _server_cpu(stats)
    return t1 - t0, c1 - c0, s1 - s0


async def swarm_round(url: str, stats: aioredis.Redis, n: int, cap: int) -> tuple[float, ...]:
    prefix = f"mfwbench:{uuid.uuid4().hex[:8]}:"
    manager = InMemoryTaskManager()
    runtime = mageflow.create_runtime(url, manager, MageflowConfig(key_prefix=prefix))
    await runtime.store.prepare()

    @manager.task("wbench-member")
    async def member(msg: Member) -> None:
        return None

    async def go() -> None:
        await swarm.aio_run_no_wait()
        await manager.wait_idle(timeout=max(60.0, n / 50))

    try:
        # this runtime only, not the process default (the test suite runs this too)
        with runtime.activate():
            swarm = await mageflow.aswarm(config=SwarmConfig(max_concurrency=cap))
            members = [Member(i=i) for i in range(n)]
            await swarm.aio_run_tasks_in_swarm(["wbench-member"] * n, members)
            await swarm.close_swarm()
            return await _timed(stats, go)
    finally:
        await runtime.store.client.aclose()
        await drop_prefix(stats, prefix)


async def floor_round(url: str, stats: aioredis.Redis, n: int, cap: int) -> tuple[float, ...]:
    client = mageflow.redis_client(url) if hasattr(mageflow, "redis_client") else None
    if client is None:
        client = aioredis.Redis(
            connection_pool=aioredis.BlockingConnectionPool.from_url(
                url, decode_responses=True, max_connections=100
            )
        )
    script = client.register_script("return 1")
    await script()
    members = iter(range(n))

    async def slot() -> None:
        for i in members:
            await script(keys=[f"mfwbench:floor:{i}"], args=["begin", str(i)])
            await script(keys=[f"mfwbench:floor:{i}"], args=["finish", str(i)])

    async def go() -> None:
        await asyncio.gather(*(slot() for _ in range(cap)))

    try:
        return await _timed(stats, go)
    finally:
        await client.aclose()


async def main(url: str, n: int, cap: int, rounds: int) -> None:
    stats = aioredis.from_url(url, decode_responses=True)
    rows: dict[str, list[tuple[float, ...]]] = {"swarm member": [], "floor: 2 EVALSHA": []}
    try:
        await swarm_round(url, stats, min(n, 500), cap)  # warm-up: imports, scripts
        for _ in range(rounds):
            rows["swarm member"].append(await swarm_round(url, stats, n, cap))
            rows["floor: 2 EVALSHA"].append(await floor_round(url, stats, n, cap))
    finally:
        await stats.aclose()
    out = []
    for label, runs in rows.items():
        wall = statistics.median(r[0] for r in runs) / n * 1e6
        cpu = statistics.median(r[1] for r in runs) / n * 1e6
        server = statistics.median(r[2] for r in runs) / n * 1e6
        spread = ", ".join(f"{r[1] / n * 1e6:.0f}" for r in runs)
        out.append([label, f"{wall:.0f}", f"{cpu:.0f}", spread, f"{server:.0f}"])
    print(
        f"\nWorker path per member, in-memory engine, real Redis ({n} members, cap {cap}, "
        f"median of {rounds} rounds)"
    )
    print(table(["workload", "wall us", "client CPU us", "(each round)", "server CPU us"], out))


def cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=5000)
    parser.add_argument("--cap", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from tests._redis import redis_server

    with redis_server() as url:
        asyncio.run(main(url, args.members, args.cap, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
