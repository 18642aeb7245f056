"""A task's big result reaching its callback through a real Hatchet engine: by reference vs inline.

Run from the repository root::

    uv run python benchmarks/payload_engine_bench.py [--mb 1] [--n 9] [--warmup 2]

``bulk_bench.py`` measures the same chain on the in-memory engine (MageFlow's
own cost only). Here the engine carries what MageFlow gives it: one Hatchet
engine (``tests/e2e/_engine.py``), Redis (``tests/_redis.py``) and a worker
subprocess per mode. A MageFlow task returns a string of ``--mb`` MB and its
success callback receives it through a ``ReturnValue`` field:

* inline (``payload_threshold`` above the result's size): the result travels
  as the run's output and in the callback's input, through gRPC and
  PostgreSQL;
* by reference (the default ``payload_threshold``, 512 KiB): the result is
  stored once in Redis, the engine carries a ~200-byte reference, and the
  callback's worker reads it back before validation;
* native Hatchet (the baseline): a task that triggers a second task with the
  same string as its input, as a plain Hatchet user would pass it on.

Each chain is timed from the trigger until the callback's (or the second
task's) body starts, where it records ``time.monotonic()`` (one clock for every
process on Linux); the modes alternate with the native chain, round by round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis.asyncio as aioredis  # noqa: E402
from hatchet_sdk import Context, Hatchet  # noqa: E402
from mageflow import Mageflow, MageflowConfig, ReturnValue  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from benchmarks._common import drop_prefix, table  # noqa: E402

BIG = "pebench-big"
GOT = "pebench-got"
NATIVE_FIRST = "pebench-native-first"
NATIVE_SECOND = "pebench-native-second"
INLINE_THRESHOLD = 64 * 1024 * 1024


class BigIn(BaseModel):
    size: int


class GotIn(BaseModel):
    value: ReturnValue[str]
    reply_to: str


class NativeIn(BaseModel):
    size: int
    reply_to: str


class SecondIn(BaseModel):
    value: str
    reply_to: str


class PayloadApp:
    """The benchmark's tasks; the worker and the benchmark build the same ones."""

    def __init__(
        self, hatchet: Hatchet, mf_redis: aioredis.Redis, rec: aioredis.Redis, prefix: str, th: int
    ) -> None:
        config = MageflowConfig(key_prefix=prefix, payload_threshold=th)
        self.mf = Mageflow(hatchet, mf_redis, config=config)
        mf = self.mf

        async def record(reply_to: str, length: int) -> None:
            await rec.rpush(reply_to, json.dumps({"t_end": time.monotonic(), "len": length}))

        @mf.task(name=BIG, input_validator=BigIn)
        async def big(msg: BigIn) -> str:
            return "x" * msg.size

        @mf.task(name=GOT, input_validator=GotIn)
        async def got(msg: GotIn) -> None:
            await record(msg.reply_to, len(msg.value))

        @hatchet.task(name=NATIVE_SECOND, input_validator=SecondIn)
        async def native_second(inp: SecondIn, ctx: Context) -> None:
            await record(inp.reply_to, len(inp.value))

        @hatchet.task(name=NATIVE_FIRST, input_validator=NativeIn)
        async def native_first(inp: NativeIn, ctx: Context) -> None:
            second = SecondIn(value="x" * inp.size, reply_to=inp.reply_to)
            await native_second.aio_run(second, wait_for_result=False)

        self.big, self.got, self.native_first = big, got, native_first
        self.workflows = [big, got, native_first, native_second]


def worker_main() -> None:
    url = os.environ["REDIS_URL"]
    app = PayloadApp(
        Hatchet(),
        aioredis.from_url(url, decode_responses=True),
        aioredis.from_url(url, decode_responses=True),
        os.environ["PEBENCH_PREFIX"],
        int(os.environ["PEBENCH_THRESHOLD"]),
    )
    app.mf.worker("pebench-worker", slots=10, workflows=app.workflows).start()


async def _wait(rec: aioredis.Redis, reply_to: str, size: int) -> float:
    got = await rec.blpop([reply_to], timeout=120)
    if got is None:
        raise TimeoutError(f"no callback within 120 s ({reply_to})")
    data = json.loads(got[1])
    assert data["len"] == size, data
    return float(data["t_end"])


async def measure(url: str, prefix: str, th: int, size: int, n: int, warmup: int) -> dict[str, Any]:
    rec = aioredis.from_url(url, decode_responses=True)
    mf_redis = aioredis.from_url(url, decode_responses=True)
    app = PayloadApp(Hatchet(), mf_redis, rec, prefix, th)
    times: dict[str, list[float]] = {"mageflow": [], "native": []}
    try:
        for i in range(warmup + n):
            cb = await app.mf.asign(app.got, reply_to=f"{prefix}r:mf:{i}")
            sig = await app.mf.asign(app.big, success_callbacks=[cb])
            t0 = time.monotonic()
            await sig.aio_run_no_wait(BigIn(size=size))
            mf_ms = (await _wait(rec, f"{prefix}r:mf:{i}", size) - t0) * 1000
            t0 = time.monotonic()
            reply = f"{prefix}r:native:{i}"
            await app.native_first.aio_run(
                NativeIn(size=size, reply_to=reply), wait_for_result=False
            )
            native_ms = (await _wait(rec, reply, size) - t0) * 1000
            if i >= warmup:
                times["mageflow"].append(mf_ms)
                times["native"].append(native_ms)
        return times
    finally:
        await mf_redis.aclose()
        await rec.aclose()


def run(size: int, n: int, warmup: int) -> list[list[str]]:
    from tests._redis import redis_server
    from tests.e2e._engine import start_engine
    from tests.e2e._worker import WorkerProcess

    rows: list[list[str]] = []
    engine = start_engine()
    try:
        with redis_server() as url:
            for label, th in (("inline", INLINE_THRESHOLD), ("by reference", 512 * 1024)):
                prefix = f"pebench:{uuid.uuid4().hex[:8]}:"
                env = {
                    **engine.worker_env(),
                    "REDIS_URL": url,
                    "PEBENCH_PREFIX": prefix,
                    "PEBENCH_THRESHOLD": str(th),
                }
                worker = WorkerProcess(
                    "benchmarks.payload_engine_bench", env, args=["--worker"], name="pebench"
                )
                worker.start()
                try:
                    with engine.exported_env():
                        times = asyncio.run(measure(url, prefix, th, size, n, warmup))
                finally:
                    worker.stop()
                    asyncio.run(_drop(url, prefix))
                for who, values in (
                    ("MageFlow, " + label, times["mageflow"]),
                    ("native Hatchet (same round)", times["native"]),
                ):
                    rows.append(
                        [
                            who,
                            f"{statistics.median(values):.0f}",
                            f"{min(values):.0f}",
                            f"{max(values):.0f}",
                        ]
                    )
    finally:
        engine.stop()
    return rows


async def _drop(url: str, prefix: str) -> None:
    client = aioredis.from_url(url, decode_responses=True)
    try:
        await drop_prefix(client, prefix)
    finally:
        await client.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=1.0, help="size of the result, MB")
    parser.add_argument("--n", type=int, default=9, help="measured chains per mode")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main()
        return 0
    size = int(args.mb * 1024 * 1024)
    started = time.perf_counter()
    rows = run(size, args.n, args.warmup)
    print(
        f"\nA task's {args.mb:g} MB result reaching its callback on a real Hatchet engine "
        f"(ms from the trigger until the callback's body starts; {args.n} chains per mode, "
        f"after {args.warmup} warm-up)"
    )
    print(table(["chain", "p50 ms", "min ms", "max ms"], rows))
    print(f"\n({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
