"""End-to-end latency and Redis cost of MageFlow on a real Hatchet engine.

Run from the repository root::

    uv run python benchmarks/hatchet_bench.py [--n N] [--warmup W] [--check]

It starts Redis (``tests/_redis.py``: REDIS_URL, else a testcontainer, else the
bundled valkey), one Hatchet engine (``tests/e2e/_engine.py`` ``start_engine``:
hatchet-sdk's embedded path with ``tools/engine/sidecar.py``) and one worker
subprocess (``benchmarks/hatchet_bench_worker.py``). Then, alternating the two
chains, it measures N times, after W warm-up iterations:

* MageFlow: ``sig.aio_run_no_wait(msg)`` of a ``bench-step`` signature with one
  success callback, until the ``bench-callback`` body starts;
* native Hatchet: ``native-first.aio_run(..., wait_for_result=False)``, whose body
  triggers ``native-second`` the same way, until the ``native-second`` body starts;

and, inside the worker process, the Redis round trips MageFlow's client makes
while driving those runs. Worker and engine are stopped on exit, Ctrl-C or error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis.asyncio as aioredis  # noqa: E402
from hatchet_sdk import EmptyModel  # noqa: E402
from mageflow import SignatureStatus, TaskSignature  # noqa: E402

from benchmarks._common import Tally, counting_client, drop_prefix, fmt, table  # noqa: E402
from benchmarks.hatchet_bench_app import BenchApp, NativeIn, StepIn  # noqa: E402
from benchmarks.hatchet_bench_worker import TIMERS, timed  # noqa: E402
from tests._redis import redis_server  # noqa: E402
from tests.e2e._engine import DEFAULT_ENGINE_TAG, Engine, start_engine  # noqa: E402
from tests.e2e._worker import WorkerProcess  # noqa: E402

TARGET_RATIO = 1.2  # MageFlow p50 latency / native p50 latency
TARGET_RT_PER_RUN = 2.0  # Redis round trips MageFlow adds per run, worker side
RUNS_PER_CHAIN = 2  # bench-step + bench-callback: two MageFlow runs per iteration
MF, NATIVE, DETACHED = "MageFlow", "native", "native detached"
CHAINS = (MF, NATIVE, DETACHED)
LABELS = {
    MF: "MageFlow         sig -> bench-step -> bench-callback",
    NATIVE: "native           native-first -> native-second (child)",
    DETACHED: "native detached  native-first-detached -> native-second",
}
WAIT_S = 30.0  # deadline for one chain to finish


@dataclass
class Sample:
    total: float  # trigger call start -> 2nd body start
    trigger: float  # the trigger call itself (returns once the engine accepted the run)
    first: float  # trigger call start -> 1st body start
    hop: float  # 1st body start -> 2nd body start


class ChainTimeout(RuntimeError):
    pass


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def ms(value: float) -> str:
    return f"{value * 1000:.1f}"


async def _await_record(rec: aioredis.Redis, key: str, what: str) -> dict[str, Any]:
    got = await rec.blpop([key], timeout=WAIT_S)
    if got is None:
        raise ChainTimeout(f"{what}: no record on {key} within {WAIT_S:.0f}s")
    return dict(json.loads(got[1]))


def _sample(t0: float, t_sent: float, record: dict[str, Any]) -> Sample:
    t_end = float(record["t_end"])
    t_first = float(record["t_first"]) if record.get("t_first") is not None else t_end
    return Sample(total=t_end - t0, trigger=t_sent - t0, first=t_first - t0, hop=t_end - t_first)


class Bench:
    def __init__(self, app: BenchApp, rec: aioredis.Redis, prefix: str) -> None:
        self.app = app
        self.rec = rec
        self.prefix = prefix
        self.callbacks: list[TaskSignature] = []
        self.client_rt = 0
        self.client_cmds = 0

    async def mageflow_once(self, i: int) -> Sample:
        mf = self.app.mf
        reply_to = f"{self.prefix}reply:mf:{i}"
        rt0, c0 = Tally.snapshot()
        cb = await mf.asign(self.app.callback, reply_to=reply_to)
        sig = await mf.asign(self.app.step, success_callbacks=[cb])
        t0 = time.monotonic()
        await sig.aio_run_no_wait(StepIn(i=i))
        t_sent = time.monotonic()
        rt1, c1 = Tally.snapshot()
        self.client_rt += rt1 - rt0
        self.client_cmds += c1 - c0
        self.callbacks.append(cb)
        record = await _await_record(self.rec, reply_to, f"MageFlow chain {i}")
        return _sample(t0, t_sent, record)

    async def native_once(self, i: int, *, detached: bool = False) -> Sample:
        first = self.app.native_first_detached if detached else self.app.native_first
        reply_to = f"{self.prefix}reply:{first.name}:{i}"
        t0 = time.monotonic()
        await first.aio_run(NativeIn(i=i, reply_to=reply_to), wait_for_result=False)
        t_sent = time.monotonic()
        record = await _await_record(self.rec, reply_to, f"{first.name} chain {i}")
        return _sample(t0, t_sent, record)

    async def once(self, chain: str, i: int) -> Sample:
        if chain == MF:
            return await self.mageflow_once(i)
        return await self.native_once(i, detached=chain == DETACHED)

    async def worker_stats(self) -> dict[str, Any]:
        return dict(await self.app.stats.aio_run(EmptyModel()))

    async def settle(self, sigs: Sequence[TaskSignature]) -> None:
        """Wait until every callback finished (its FINISH script has run)."""
        deadline = time.monotonic() + WAIT_S
        for sig in sigs:
            while True:
                loaded = await self.app.mf.load_signature(sig.key)
                if loaded is not None and loaded.status == SignatureStatus.DONE:
                    break
                if time.monotonic() > deadline:
                    raise ChainTimeout(f"callback {sig.key} not done within {WAIT_S:.0f}s")
                await asyncio.sleep(0.01)


def _timer_rows(
    before: dict[str, list[float]], after: dict[str, list[float]], n: int
) -> list[list[str]]:
    rows = []
    for name, (calls1, secs1) in after.items():
        c0, s0 = before.get(name, [0, 0.0])
        calls, secs = calls1 - c0, secs1 - s0
        if calls:
            per_call = f"{secs / calls * 1000:.2f}"
            rows.append([name, fmt(round(calls / n, 2)), per_call, ms(secs / n)])
    return rows


async def _evalsha_stats(rec: aioredis.Redis) -> tuple[int, int]:
    """(calls, usec) of EVALSHA on the server, from INFO commandstats."""
    raw = (await rec.info("commandstats")).get("cmdstat_evalsha") or {}
    return int(raw.get("calls", 0)), int(raw.get("usec", 0))


async def run(engine: Engine, url: str, prefix: str, n: int, warmup: int) -> bool:
    mf_redis = counting_client(url)
    rec = aioredis.from_url(url, decode_responses=True)
    try:
        return await _run(engine, mf_redis=mf_redis, rec=rec, prefix=prefix, n=n, warmup=warmup)
    finally:
        with contextlib.suppress(Exception):
            await drop_prefix(rec, prefix)
        await mf_redis.aclose()
        await rec.aclose()


async def _run(
    engine: Engine,
    *,
    mf_redis: aioredis.Redis,
    rec: aioredis.Redis,
    prefix: str,
    n: int,
    warmup: int,
) -> bool:
    server = await rec.info("server")
    redis_name = (
        f"valkey {server['valkey_version']}"
        if "valkey_version" in server
        else f"redis {server.get('redis_version', '?')}"
    )
    app = BenchApp(engine.client(), mf_redis, None, prefix)
    runtime = app.mf.runtime
    await runtime.store.prepare()
    await mf_redis.ping()
    timed(runtime, "run", "aio_run_no_wait (whole call)")
    timed(runtime.store, "dispatch", "  DISPATCH script")
    timed(runtime.manager, "dispatch", "  Hatchet trigger")
    bench = Bench(app, rec, prefix)
    load_start = os.getloadavg()[0]

    # Warm-up: connections, scripts, the engine's caches.
    for i in range(warmup):
        for chain in CHAINS:
            await bench.once(chain, -1 - i)
    await bench.settle(bench.callbacks)
    bench.callbacks.clear()
    bench.client_rt = bench.client_cmds = 0
    before = await bench.worker_stats()
    script_before = await _evalsha_stats(rec)
    caller_before = {name: list(v) for name, v in TIMERS.items()}

    # Rotate the order every iteration, so drifting load hits all chains alike.
    samples: dict[str, list[Sample]] = {chain: [] for chain in CHAINS}
    started = time.perf_counter()
    for i in range(n):
        for j in range(len(CHAINS)):
            chain = CHAINS[(i + j) % len(CHAINS)]
            samples[chain].append(await bench.once(chain, i))
    measured_s = time.perf_counter() - started
    await bench.settle(bench.callbacks)
    after = await bench.worker_stats()
    script_after = await _evalsha_stats(rec)
    caller_after = {name: list(v) for name, v in TIMERS.items()}
    load_end = os.getloadavg()[0]

    # -- figures ----------------------------------------------------------------
    missed = False

    def verdict(value: float, target: float, unit: str = "") -> str:
        nonlocal missed
        if value <= target:
            return f"<={fmt(target)}{unit} ok"
        missed = True
        return f"<={fmt(target)}{unit} MISSED"

    total = {chain: [x.total for x in samples[chain]] for chain in CHAINS}
    p50 = {chain: pct(total[chain], 50) for chain in CHAINS}
    p95 = {chain: pct(total[chain], 95) for chain in CHAINS}
    mean = {chain: statistics.fmean(total[chain]) for chain in CHAINS}
    ratio_p50 = p50[MF] / p50[NATIVE]

    rt = after["round_trips"] - before["round_trips"]
    cmds = after["commands"] - before["commands"]
    by_cmd = Counter(after["by_command"]) - Counter(before["by_command"])
    rt_per_run = rt / n / RUNS_PER_CHAIN

    tag = os.environ.get("HATCHET_ENGINE_TAG", DEFAULT_ENGINE_TAG)
    cpus = os.cpu_count() or 1
    print()
    print(
        f"MageFlow on Hatchet, end to end  (hatchet-lite {tag}, {redis_name}, n={n} per chain "
        f"after {warmup} warm-up, order rotated; {cpus} CPUs, load avg "
        f"{load_start:.2f} -> {load_end:.2f})"
    )
    print()
    print("Latency in ms: trigger call -> body of the chain's 2nd run starts (2 runs each)")
    print(
        table(
            ["chain", "p50", "p95", "mean", "min", "max", "stdev"],
            [
                [
                    LABELS[chain],
                    ms(p50[chain]),
                    ms(p95[chain]),
                    ms(mean[chain]),
                    ms(min(total[chain])),
                    ms(max(total[chain])),
                    ms(statistics.pstdev(total[chain])),
                ]
                for chain in CHAINS
            ],
        )
    )
    print()
    print("Where the time goes, p50 in ms")
    print(
        table(
            ["chain", "trigger call", "start -> 1st body", "1st body -> 2nd body"],
            [
                [
                    chain,
                    ms(pct([x.trigger for x in samples[chain]], 50)),
                    ms(pct([x.first for x in samples[chain]], 50)),
                    ms(pct([x.hop for x in samples[chain]], 50)),
                ]
                for chain in CHAINS
            ],
        )
    )
    print(
        "(trigger call: aio_run_no_wait / aio_run(wait_for_result=False) until it returns.\n"
        " For MageFlow, 1st -> 2nd body is the rest of bench-step: FINISH + the callback's\n"
        " Hatchet trigger, then the engine's scheduling and bench-callback's BEGIN.)"
    )
    caller_rows = _timer_rows(caller_before, caller_after, n)
    if caller_rows:
        print()
        print("MageFlow in the calling process (wall time, mean)")
        print(table(["", "calls/chain", "ms/call", "ms/chain"], caller_rows))
    worker_rows = _timer_rows(before.get("timers", {}), after.get("timers", {}), n)
    if worker_rows:
        print()
        print("MageFlow in the worker process (wall time, mean; execute_run includes the bodies)")
        print(table(["", "calls/chain", "ms/call", "ms/chain"], worker_rows))
        calls = script_after[0] - script_before[0]
        if calls:
            usec = (script_after[1] - script_before[1]) / calls
            print(
                f"(the server itself spent {usec:.0f} us per EVALSHA (INFO commandstats, all "
                "scripts); the rest\n of a round trip is the client's event loop and the OS "
                "scheduler)"
            )

    print()
    print(
        table(
            ["target", "value", "target", "other views"],
            [
                [
                    "latency MageFlow / native (p50)",
                    f"{ratio_p50:.2f}x",
                    verdict(ratio_p50, TARGET_RATIO, "x"),
                    f"mean {mean[MF] / mean[NATIVE]:.2f}x, p95 {p95[MF] / p95[NATIVE]:.2f}x, "
                    f"p50 {(p50[MF] - p50[NATIVE]) * 1000:+.1f} ms; "
                    f"vs native detached p50 {p50[MF] / p50[DETACHED]:.2f}x",
                ],
                [
                    "Redis RT added per MageFlow run (worker)",
                    fmt(round(rt_per_run, 2)),
                    verdict(rt_per_run, TARGET_RT_PER_RUN),
                    f"{fmt(round(rt / n, 2))} RT / {fmt(round(cmds / n, 2))} commands "
                    f"per chain of {RUNS_PER_CHAIN} runs",
                ],
            ],
        )
    )
    print()
    print(f"Worker-side Redis commands per chain (pid {after.get('pid')}, MageFlow's client):")
    for name, count in sorted(by_cmd.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {name:<22} {fmt(round(count / n, 2))}")
    print(
        f"Caller side (not in the target): asign x2 + aio_run_no_wait = "
        f"{fmt(round(bench.client_rt / n, 2))} RT, {fmt(round(bench.client_cmds / n, 2))} "
        "commands per chain."
    )
    print(
        "The benchmark's own records (RPUSH in the 2nd body) go through a separate client\n"
        "in the worker and are not counted; the native chains make no MageFlow Redis calls."
    )

    spreads = {chain: p95[chain] / p50[chain] for chain in CHAINS}
    load = max(load_start, load_end)
    if max(spreads.values()) > 1.5 or load > 0.75 * cpus:
        print()
        listed = ", ".join(f"{chain} {value:.2f}" for chain, value in spreads.items())
        print(f"NOTE: noisy measurement: p95/p50 {listed}; load avg {load:.2f} on {cpus} CPUs.")
        print(
            "      Other processes share this machine: trust the p50s more than p95/mean,\n"
            "      rerun with a larger --n, or run on an idle machine for stable numbers."
        )
    print()
    print(f"measured phase {measured_s:.1f} s")
    return not missed


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30, help="measured iterations per chain")
    parser.add_argument("--warmup", type=int, default=5, help="warm-up iterations per chain")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    if args.n < 1 or args.warmup < 0:
        parser.error("--n must be positive and --warmup non-negative")
    signal.signal(signal.SIGTERM, _raise_interrupt)

    started = time.perf_counter()
    prefix = f"mfbench:{uuid.uuid4().hex[:8]}:"
    engine: Engine | None = None
    worker: WorkerProcess | None = None
    ok = False
    try:
        with redis_server() as url:
            try:
                print("starting the Hatchet engine ...", flush=True)
                engine = start_engine()
                print(f"engine up in {time.perf_counter() - started:.1f} s; starting the worker")
                worker = WorkerProcess(
                    "benchmarks.hatchet_bench_worker",
                    engine.worker_env({"REDIS_URL": url, "MFBENCH_PREFIX": prefix}),
                    name="mfbench-worker",
                    cwd=ROOT,
                    stop_timeout=10,
                )
                worker.start()
                print(f"worker ready at {time.perf_counter() - started:.1f} s; measuring")
                ok = asyncio.run(run(engine, url, prefix, args.n, args.warmup))
            except ChainTimeout as exc:
                print(f"error: {exc}", file=sys.stderr)
                if worker is not None:
                    print(f"worker output (tail):\n{worker.output(40)}", file=sys.stderr)
                return 2
            finally:
                # a second Ctrl-C must not leave the worker or the engine behind
                previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
                try:
                    if worker is not None:
                        worker.stop()
                        with contextlib.suppress(OSError):
                            worker.log_path.unlink()
                    if engine is not None:
                        engine.stop()
                finally:
                    signal.signal(signal.SIGINT, previous)
    except KeyboardInterrupt:
        print("interrupted; worker and engine stopped", file=sys.stderr)
        return 130
    print(f"(total {time.perf_counter() - started:.1f} s)")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
