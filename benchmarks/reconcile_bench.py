"""What a reconciler sweep costs, and that it does not grow with settled signatures.

Run from the repository root::

    uv run python benchmarks/reconcile_bench.py [--outstanding 1000] [--settled 0,10000,30000]

Redis comes from ``tests/_redis.py`` (REDIS_URL, else a testcontainer, else the
bundled valkey); every key goes under a fresh prefix and is deleted at the end.
The engine is the in-memory one with ``hold`` set, so runs stay queued and
the engine answers ``queued`` for each: the steady state of a sweep that
finds everything still in progress (it leaves every item and re-stamps it).

For each number of settled signatures (run to ``done``, as in production: a
dispatch, BEGIN and FINISH each), ``--outstanding`` signatures are left
outstanding, half as claims whose run is queued, half as begun runs
(``active``); then one sweep, ``runtime.reconcile(older_than=0)``, is
measured: Redis round trips and commands the client sent, commands the server
ran (``INFO commandstats``, counting every ``redis.call`` inside the scripts),
``run_status`` calls and the run ids they carried, wall time (best of 3
sweeps; on a shared 2-core machine single figures are noisy). Beside it, the
baseline a reconciler without the indexes would pay just to find its work:
the ``SCAN`` round trips (``COUNT 1000``) over every signature key.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import mageflow  # noqa: E402
from mageflow import MageflowConfig  # noqa: E402
from mageflow.engine import RunStatusRequest, RunStatusResult  # noqa: E402
from mageflow.inmemory import InMemoryTaskManager  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from benchmarks._common import Tally, command_stats, counting_client, table  # noqa: E402
from tests._redis import redis_server  # noqa: E402


class Msg(BaseModel):
    n: int = 0


class CountingEngine(InMemoryTaskManager):
    def __init__(self) -> None:
        super().__init__()
        self.status_calls = 0
        self.asked = 0

    async def run_status(self, request: RunStatusRequest) -> RunStatusResult:
        self.status_calls += 1
        self.asked += len(request.run_ids)
        return await super().run_status(request)


async def _gather(n: int, make: object, concurrency: int = 32) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await make(i)  # type: ignore[operator]

    await asyncio.gather(*(one(i) for i in range(n)))


async def scenario(url: str, settled: int, outstanding: int) -> list[str]:
    client = counting_client(url)
    stats = counting_client(url)
    prefix = f"mfbench:{uuid.uuid4().hex[:8]}:"
    engine = CountingEngine()

    @engine.task("work", input_validator=Msg)
    async def work(msg: Msg) -> int:
        return msg.n

    runtime = mageflow.configure(client, engine, MageflowConfig(key_prefix=prefix))
    store = runtime.store
    await store.prepare()
    try:

        async def finished(i: int) -> None:
            sig = await runtime.sign("work")
            await sig.aio_run_no_wait(Msg(n=i))

        # settled signatures, run to done as in production, 50 at a time
        for start in range(0, settled, 50):
            await _gather(min(50, settled - start), finished, concurrency=16)
            await engine.wait_idle(timeout=600)
        leftover = await runtime.reconcile(older_than=timedelta(0))
        if leftover.examined:
            from collections import Counter

            print("leftover", leftover, Counter(r.status for r in engine.runs.values()))
            print([r.error for r in engine.runs.values() if r.error][:3])
        engine.hold = True
        runs: dict[str, str] = {}

        async def claimed(i: int) -> None:
            sig = await runtime.sign("work")
            await sig.aio_run_no_wait(Msg(n=i))
            runs[sig.key] = ""

        await _gather(outstanding, claimed)
        # half of them begin (a worker took the run), the rest stay claims
        begun = list(runs)[: outstanding // 2]
        records = {r.signature_key: r for r in engine.runs.values() if r.status == "queued"}

        async def begin(i: int) -> None:
            rec = records[begun[i]]
            await store.begin(rec.signature_key, rec.dispatch_id, rec.run_id, rec.input)
            rec.status = "running"

        await _gather(len(begun), begin)
        keys = await client.dbsize()
        sweeps = []
        for _ in range(3):
            srv0 = await command_stats(stats)
            rt0, cmd0 = Tally.snapshot()
            calls0, asked0 = engine.status_calls, engine.asked
            t0 = time.perf_counter()
            report = await runtime.reconcile(older_than=timedelta(0))
            wall = time.perf_counter() - t0
            rt1, cmd1 = Tally.snapshot()
            srv1 = await command_stats(stats)
            server = sum(srv1.values()) - sum(srv0.values()) - 1  # minus the INFO itself
            sweeps.append(
                (
                    rt1 - rt0,
                    cmd1 - cmd0,
                    server,
                    engine.status_calls - calls0,
                    engine.asked - asked0,
                    wall,
                    report.examined,
                    report.left,
                )
            )
        rt, sent, server, calls, asked, _, examined, left = sweeps[-1]
        wall = min(s[5] for s in sweeps)
        scan_rt = 0
        cursor = 0
        while True:
            cursor, _ = await stats.scan(cursor, match=f"{prefix}sig:*", count=1000)
            scan_rt += 1
            if cursor == 0:
                break
        return [
            f"{settled:,}",
            f"{outstanding:,}",
            f"{keys:,}",
            str(examined),
            str(left),
            str(rt),
            str(sent),
            f"{server:,}",
            str(calls),
            f"{asked:,}",
            f"{wall * 1000:.0f}",
            str(scan_rt),
        ]
    finally:
        engine.hold = False
        async for k in stats.scan_iter(match=f"{prefix}*", count=1000):
            await stats.delete(k)
        await client.aclose()
        await stats.aclose()


async def run(url: str, settled: list[int], outstanding: int) -> None:
    rows = [await scenario(url, s, outstanding) for s in settled]
    print(
        table(
            [
                "settled",
                "outstanding",
                "keys",
                "examined",
                "left",
                "RT",
                "sent",
                "server cmds",
                "run_status calls",
                "run ids asked",
                "ms",
                "baseline: SCAN RT",
            ],
            rows,
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outstanding", type=int, default=1000)
    parser.add_argument("--settled", default="0,10000,30000")
    args = parser.parse_args()
    settled = [int(x) for x in args.settled.split(",") if x.strip()]
    started = time.perf_counter()
    with redis_server() as url:
        asyncio.run(run(url, settled, args.outstanding))
    print(f"({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
