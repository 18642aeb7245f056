"""What the query indexes, the status notifications and result waiters cost.

Run from the repository root::

    uv run python benchmarks/index_bench.py [--n N] [--waiters W]

For each operation it prints, per call: client round trips, the server
commands run inside the scripts, and how many of those are index upkeep or
notification (``ZADD``/``ZREM``/``ZREMRANGEBYSCORE`` on ``idx:*``, their
``PEXPIRE``, ``PUBLISH``, ``TIME``), next to the same operation's total. Then
the memory the indexes take per signature (``MEMORY USAGE`` of every index
key, whose names are known, divided by the number of signatures), beside
the signature hash itself. Last, ``W`` concurrent ``mageflow.result`` waiters:
server commands per waiter and pub/sub connections.

Round trips per operation are unchanged by the indexes (they live inside the
existing scripts); the figures here are the extra server-side work.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import mageflow  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
from mageflow import MageflowConfig, MageflowRuntime  # noqa: E402
from mageflow._store.redis_store import RedisStore  # noqa: E402
from mageflow.inmemory import InMemoryTaskManager  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from benchmarks._common import CountingConnection, Tally, command_stats, table  # noqa: E402
from tests._redis import redis_server  # noqa: E402

INDEX_COMMANDS = ("zadd", "zrem", "zremrangebyscore", "publish", "time")


class WaiterConnection(CountingConnection):
    """Counts only what the waiting runtime sends."""

    sent: Counter[str] = Counter()

    def pack_command(self, *args: object) -> list[bytes]:
        WaiterConnection.sent[str(args[0]).lower()] += 1
        return super().pack_command(*args)


class Num(BaseModel):
    n: int


async def _measure(
    stats: aioredis.Redis, label: str, n: int, op: object
) -> tuple[str, float, float, float, float]:
    before_rt, before_sent = Tally.snapshot()
    before = await command_stats(stats)
    await op()  # type: ignore[operator]
    after = await command_stats(stats)
    delta: Counter[str] = after - before
    delta["info"] = 0
    total = sum(delta.values())
    evalsha = delta["evalsha"]
    in_script = total - (Tally.commands - before_sent)
    upkeep = sum(delta[c] for c in INDEX_COMMANDS)
    # each index write also refreshes the index's TTL: one PEXPIRE per ZADD
    upkeep += delta["zadd"]
    return (
        label,
        (Tally.round_trips - before_rt) / n,
        evalsha / n,
        in_script / n,
        upkeep / n,
    )


async def main(n: int, waiters: int) -> None:
    with redis_server() as url:
        # a blocking pool, as mageflow.configure(url) builds: 1 000 runs finishing
        # at once wait for a connection instead of failing
        pool = aioredis.BlockingConnectionPool.from_url(
            url, connection_class=CountingConnection, decode_responses=True, max_connections=100
        )
        client = aioredis.Redis(connection_pool=pool)
        stats = aioredis.from_url(url, decode_responses=True)
        prefix = f"mfbench:{uuid.uuid4().hex[:8]}:"
        manager = InMemoryTaskManager()
        gate = asyncio.Event()

        @manager.task("work", input_validator=Num)
        async def work(msg: Num) -> int:
            await gate.wait()
            return msg.n

        rt: MageflowRuntime = mageflow.configure(client, manager, MageflowConfig(key_prefix=prefix))
        await rt.store.prepare()
        try:
            rows = []
            sigs: list[mageflow.TaskSignature] = []

            async def create() -> None:
                for i in range(n):
                    sigs.append(await mageflow.asign("work", task_identifiers={"order": i % 100}))

            rows.append(await _measure(stats, "asign (1 identifier)", n, create))

            async def suspend() -> None:
                for s in sigs:
                    await s.suspend()

            async def resume() -> None:
                for s in sigs:
                    await s.resume()

            rows.append(await _measure(stats, "suspend", n, suspend))
            rows.append(await _measure(stats, "resume", n, resume))

            async def run_all() -> None:
                gate.set()
                for i, s in enumerate(sigs):
                    await s.aio_run_no_wait(Num(n=i))
                await manager.wait_idle(60)

            rows.append(await _measure(stats, "run: dispatch+begin+finish", n, run_all))
            print(f"{n} signatures, prefix {prefix}\n")
            print(
                table(
                    ["operation", "RT", "scripts", "in-script cmds", "of which Z*/PUBLISH/TIME"],
                    [
                        (r[0], f"{r[1]:.2f}", f"{r[2]:.2f}", f"{r[3]:.1f}", f"{r[4]:.1f}")
                        for r in rows
                    ],
                )
            )

            # memory: every index key by name (no SCAN)
            keys = rt.store.keys
            names = [keys.roots, keys.by_task("work")]
            names += [keys.by_status(s.value) for s in mageflow.SignatureStatus]
            names += [keys.by_identifier("order", str(i)) for i in range(100)]
            index_bytes = 0
            for name in names:
                used = await stats.memory_usage(name, samples=0)
                index_bytes += int(used or 0)
            sig_bytes = 0
            for s in sigs[:200]:
                sig_bytes += int(await stats.memory_usage(keys.sig(s.key), samples=0) or 0)
            print(
                f"\nmemory per signature: indexes {index_bytes / n:.0f} B (one entry each in "
                "the status, task, identifier and roots indexes); the hash of the same "
                f"finished signature {sig_bytes / min(n, 200):.0f} B"
            )

            # result waiters
            waited = [await mageflow.asign("work") for _ in range(waiters)]
            gate.clear()
            for i, s in enumerate(waited):
                await s.aio_run_no_wait(Num(n=i))
            # the waiters use a runtime of their own, so their commands are counted
            # apart from the runs'
            wpool = aioredis.BlockingConnectionPool.from_url(
                url, connection_class=WaiterConnection, decode_responses=True, max_connections=100
            )
            wclient = aioredis.Redis(connection_pool=wpool)
            wrt = MageflowRuntime(RedisStore(wclient, rt.config))
            tasks = [
                asyncio.create_task(wrt.result(s.key, timeout=60, poll_interval=60)) for s in waited
            ]
            await asyncio.sleep(0.5)
            subs = [c for c in await stats.client_list() if int(c.get("sub", 0)) > 0]
            gate.set()
            results = await asyncio.gather(*tasks)
            assert results == list(range(waiters))
            sent = WaiterConnection.sent
            per_waiter = sum(sent.values()) / waiters
            print(
                f"\n{waiters} concurrent result() waiters (each on its own signature, woken by "
                f"its run's status changes): {dict(sent)} = {per_waiter:.1f} commands per "
                f"waiter, pub/sub connections: {len(subs)}; no polling (poll_interval=60 s)"
            )
            await wrt.results.close()
            await wclient.aclose()
        finally:
            async for k in stats.scan_iter(match=f"{prefix}*"):
                await stats.delete(k)
            await rt.results.close()
            await client.aclose()
            await stats.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--waiters", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.waiters))
