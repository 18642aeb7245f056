"""Big flows (issue 10): bulk creation, swarm setup and payloads by reference, beside baselines.

Run from the repository root::

    uv run python benchmarks/bulk_bench.py [--n 10000] [--payload-mb 1] [--native]

Uses REDIS_URL when set, else whatever ``tests/_redis.py`` provides. Every
key it writes is under a fresh prefix and is deleted at the end. The engine
is a stub whose ``dispatch`` only records the request (creation rows) or the
in-memory manager (the payload rows), so the figures are MageFlow's own cost:
client CPU and Redis. ``--native`` also starts a Hatchet engine
(``tests/e2e/_engine.py``) and a worker subprocess that registers a plain
no-op task, and times native bulk submission of the same N runs
(``aio_run_many_no_wait``) beside MageFlow's creation of the swarm members.
"""

from __future__ import annotations

import argparse
import asyncio
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
from hatchet_sdk import Context, EmptyModel, Hatchet  # noqa: E402
from mageflow import MageflowConfig, ReturnValue, SwarmConfig  # noqa: E402
from mageflow._store.codec import encode_signature, jdump  # noqa: E402
from mageflow.inmemory import InMemoryTaskManager  # noqa: E402
from pydantic import BaseModel  # noqa: E402
from thirdmagic.signature import TaskSignature  # noqa: E402

from benchmarks._common import Tally, counting_client, drop_prefix  # noqa: E402
from benchmarks.store_bench import StubManager, _used_memory  # noqa: E402
from tests._redis import redis_server  # noqa: E402


class Item(BaseModel):
    order_id: int
    shop: str = "eu"


class Got(BaseModel):
    value: ReturnValue[Any]


def _row(label: str, n: int, seconds: float, rts: int, baseline: str = "") -> str:
    per_1000 = rts * 1000 / n if n else 0.0
    return f"| {label} | {n} | {seconds:.3f} | {n / seconds:,.0f} | {per_1000:.1f} | {baseline} |"


async def _timed(call: Any) -> tuple[float, int, Any]:
    rt0 = Tally.round_trips
    started = time.perf_counter()
    out = await call()
    return time.perf_counter() - started, Tally.round_trips - rt0, out


NATIVE_NOOP = "bulkbench-native-noop"


def _native_task() -> Any:
    hatchet = Hatchet()

    @hatchet.task(name=NATIVE_NOOP)
    async def noop(input: EmptyModel, ctx: Context) -> dict[str, Any]:
        return {}

    return hatchet, noop


def worker_main() -> None:
    hatchet, noop = _native_task()
    hatchet.worker("bulkbench-worker", slots=50, workflows=[noop]).start()


async def native_submission(n: int) -> float:
    """Seconds to submit n runs of a no-op task with one native bulk call."""
    _, noop = _native_task()
    warm = [noop.create_bulk_run_item(input=EmptyModel()) for _ in range(10)]
    await noop.aio_run_many_no_wait(warm)
    items = [noop.create_bulk_run_item(input=EmptyModel()) for _ in range(n)]
    started = time.perf_counter()
    await noop.aio_run_many_no_wait(items)
    return time.perf_counter() - started


async def creation(
    client: aioredis.Redis, stats: aioredis.Redis, prefix: str, n: int, native: float | None
) -> None:
    manager = StubManager()
    rt = mageflow.configure(client, manager, MageflowConfig(key_prefix=prefix))
    await rt.store.prepare()
    items = [{"order_id": i} for i in range(n)]
    rows: list[str] = []

    # baseline: the same hash fields written with a raw pipelined HSET (+ PEXPIRE)
    sample = TaskSignature(task_name="order", kwargs={"order_id": 1})
    fields = encode_signature(sample)

    async def raw_hset() -> None:
        pipe = client.pipeline(transaction=False)
        for i in range(n):
            key = f"{prefix}raw:{i}"
            pipe.hset(key, mapping=dict(zip(fields[::2], fields[1::2], strict=True)))
            pipe.pexpire(key, 86_400_000)
        await pipe.execute()

    secs, rts, _ = await _timed(raw_hset)
    rows.append(_row("raw pipelined HSET + PEXPIRE (baseline)", n, secs, rts))

    one = min(n, 1000)

    async def one_by_one() -> None:
        for i in range(one):
            await mageflow.asign("order", order_id=i)

    secs1, rts1, _ = await _timed(one_by_one)
    rows.append(_row("`asign` one by one", one, secs1, rts1))

    mem0 = await _used_memory(stats)
    secs, rts, sigs = await _timed(lambda: mageflow.asign_many("order", items))
    mem = (await _used_memory(stats) - mem0) / n
    rows.append(_row("`asign_many`", n, secs, rts, f"{secs1 / one * n / secs:.0f}x one by one"))
    assert len(sigs) == n

    async def swarm_members() -> None:
        swarm = await mageflow.aswarm(config=SwarmConfig(max_concurrency=100))
        await swarm.aio_run_tasks_in_swarm(["order"] * n, items)

    secs, rts, _ = await _timed(swarm_members)
    rows.append(_row("`aswarm` + `aio_run_tasks_in_swarm` (sign + admit)", n, secs, rts))

    async def signed_members() -> None:
        signed = await mageflow.asign_many("order", items)
        swarm = await mageflow.aswarm(config=SwarmConfig(max_concurrency=100))
        await swarm.aio_run_in_swarm(signed)

    secs2, rts2, _ = await _timed(signed_members)
    rows.append(_row("`asign_many` + `aswarm` + `aio_run_in_swarm(signed)`", n, secs2, rts2))
    if native is not None:
        rows.append(
            _row(
                "native Hatchet `aio_run_many_no_wait` (submission only)",
                n,
                native,
                0,
                f"{native / secs:.0f}x MageFlow's sign + admit",
            )
        )

    print("\n## Creation (stub engine: dispatch only records)\n")
    print("| what | N | s | per s | RT per 1 000 | note |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nmemory per `asign_many` signature: {mem:.0f} B (used_memory delta / N)")


async def payloads(client: aioredis.Redis, prefix: str, megabytes: float, rounds: int) -> None:
    size = int(megabytes * 1024 * 1024)
    print(f"\n## Payload path: task + callback with a {megabytes:g} MB result (in-memory engine)\n")
    print("| mode | p50 ms | min ms | max ms | bytes through the engine per chain |")
    print("|---|---|---|---|---|")
    arrived: asyncio.Queue[float] = asyncio.Queue()
    for label, threshold in (("inline", 64 * 1024 * 1024), ("by reference", 512 * 1024)):
        manager = InMemoryTaskManager()

        @manager.task("big")
        async def big(msg: dict[str, Any]) -> str:
            return "x" * size

        @manager.task("got")
        async def got(msg: Got) -> None:
            arrived.put_nowait(time.perf_counter())

        cfg = MageflowConfig(key_prefix=f"{prefix}{label.split()[0]}:", payload_threshold=threshold)
        rt = mageflow.configure(client, manager, cfg)
        await rt.store.prepare()
        times: list[float] = []
        carried = 0
        for _ in range(rounds):
            cb = await mageflow.asign("got")
            sig = await mageflow.asign("big", success_callbacks=[cb])
            started = time.perf_counter()
            await sig.aio_run_no_wait()
            end = await arrived.get()
            times.append((end - started) * 1000)
            await manager.wait_idle()
            carried = sum(
                len(jdump(r.input)) + len(jdump(r.result)) for r in list(manager.runs.values())[-2:]
            )
        times.sort()
        print(
            f"| {label} | {times[len(times) // 2]:.1f} | {times[0]:.1f} | {times[-1]:.1f} "
            f"| {carried:,} |"
        )


async def run(url: str, n: int, megabytes: float, rounds: int, native: float | None) -> None:
    client = counting_client(url)
    stats = aioredis.from_url(url, decode_responses=True)
    prefix = f"mfbench:{uuid.uuid4().hex[:8]}:"
    try:
        await creation(client, stats, prefix, n, native)
        await payloads(client, prefix, megabytes, rounds)
    finally:
        await drop_prefix(stats, prefix)
        await client.aclose()
        await stats.aclose()


def _native(n: int) -> float:
    from tests.e2e._engine import start_engine
    from tests.e2e._worker import WorkerProcess

    engine = start_engine()
    worker = WorkerProcess(
        "benchmarks.bulk_bench", engine.worker_env(), args=["--worker"], name="bulkbench"
    )
    try:
        worker.start()
        with engine.exported_env():
            return asyncio.run(native_submission(n))
    finally:
        worker.stop()
        engine.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="signatures / swarm members")
    parser.add_argument("--payload-mb", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=9, help="task + callback chains per mode")
    parser.add_argument(
        "--native", action="store_true", help="also time native Hatchet bulk submission"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main()
        return 0
    started = time.perf_counter()
    native = _native(args.n) if args.native else None
    with redis_server() as url:
        asyncio.run(run(url, args.n, args.payload_mb, args.rounds, native))
    print(f"\n({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
