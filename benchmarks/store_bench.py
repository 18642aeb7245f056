"""Cost of MageFlow's Redis store: throughput, round trips, commands and memory.

Run from the repository root::

    uv run python benchmarks/store_bench.py [--n N] [--concurrency C] [--memory-n M]

Uses REDIS_URL when set, else whatever ``tests/_redis.py`` provides (a
testcontainer when Docker answers, else the bundled valkey). Every key it
writes is under a fresh prefix and is deleted at the end.
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
from mageflow import (  # noqa: E402
    DispatchRequest,
    DispatchResult,
    MageflowConfig,
    RunRequest,
    TaskSignature,
)
from mageflow.engine import CancelRequest, DescribeRequest, TaskDescription, TaskManager  # noqa: E402
from mageflow.inmemory import InMemoryTaskManager  # noqa: E402

from benchmarks._common import (  # noqa: E402
    Figures,
    counting_client,
    drop_prefix,
    fmt,
    measure,
    table,
)
from tests._redis import redis_server  # noqa: E402

TARGET_RT = {"asign (2 callbacks)": 1.0, "asign (plain)": 1.0, "suspend": 1.0, "resume": 1.0}
TARGET_MEMORY = 1024


class StubManager(TaskManager):
    """A TaskManager whose dispatch only records the request (no run, no I/O)."""

    def __init__(self) -> None:
        self.requests: list[DispatchRequest] = []

    async def dispatch(self, request: DispatchRequest) -> DispatchResult:
        self.requests.append(request)
        return DispatchResult(run_id=None)

    async def cancel(self, request: CancelRequest) -> None:
        return None

    def describe(self, request: DescribeRequest) -> TaskDescription | None:
        return None


async def _body(arg: Any, sig: Any) -> dict[str, Any]:
    return {"ok": True}


def _final(exc: BaseException) -> bool:
    return True


async def _sign_many(count: int, concurrency: int, **options: Any) -> list[TaskSignature]:
    out: list[TaskSignature] = [None] * count  # type: ignore[list-item]

    async def worker(first: int) -> None:
        for i in range(first, count, concurrency):
            out[i] = await mageflow.asign("bench_task", **options)

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return out


async def _used_memory(stats: aioredis.Redis) -> int:
    return int((await stats.info("memory"))["used_memory"])


async def run(url: str, n: int, concurrency: int, memory_n: int) -> bool:
    client = counting_client(url)
    stats = aioredis.from_url(url, decode_responses=True)
    prefix = f"mfbench:{uuid.uuid4().hex[:8]}:"
    config = MageflowConfig(key_prefix=prefix)
    try:
        return await _run(
            client,
            stats,
            prefix=prefix,
            config=config,
            n=n,
            concurrency=concurrency,
            memory_n=memory_n,
        )
    finally:
        await drop_prefix(stats, prefix)
        await client.aclose()
        await stats.aclose()


async def _run(
    client: aioredis.Redis,
    stats: aioredis.Redis,
    *,
    prefix: str,
    config: MageflowConfig,
    n: int,
    concurrency: int,
    memory_n: int,
) -> bool:
    server = await stats.info("server")
    version = server.get("valkey_version") or server.get("redis_version")
    flavour = "valkey" if "valkey_version" in server else "redis"

    inmem = InMemoryTaskManager()

    @inmem.task("bench_task")
    async def bench_task(data: dict[str, Any]) -> dict[str, Any]:
        return data

    runtime = mageflow.configure(client, inmem, config)
    await runtime.store.prepare()
    # Open the pool's connections now, so handshakes are not counted later.
    await asyncio.gather(*(client.ping() for _ in range(concurrency)))

    ok_cb = await mageflow.asign("bench_cb_ok")
    err_cb = await mageflow.asign("bench_cb_err")
    cb_opts: dict[str, Any] = {"success_callbacks": [ok_cb], "error_callbacks": [err_cb]}
    with_cbs: list[TaskSignature] = []
    plain: list[TaskSignature] = []

    async def asign_cbs(i: int) -> None:
        with_cbs.append(await mageflow.asign("bench_task", order_id=i, customer="acme", **cb_opts))

    async def asign_plain(i: int) -> None:
        plain.append(await mageflow.asign("bench_task"))

    f_asign = await measure("asign (2 callbacks)", stats, n, asign_cbs)
    f_plain = await measure("asign (plain)", stats, n, asign_plain)
    f_load = await measure(
        "load_signature", stats, n, lambda i: mageflow.load_signature(with_cbs[i].key)
    )
    f_susp = await measure("suspend", stats, n, lambda i: plain[i].suspend())
    f_res = await measure("resume", stats, n, lambda i: plain[i].resume())
    f_upd = await measure(
        "kwargs.aupdate", stats, n, lambda i: with_cbs[i].kwargs.aupdate(order_id=i + 1)
    )

    async def locked(i: int) -> None:
        async with mageflow.lock_task(plain[i].key):
            pass

    f_lock = await measure("lock_task enter+exit", stats, n, locked)

    # Dispatch and worker side: a stub manager, so only MageFlow's own calls count.
    stub = StubManager()
    runtime = mageflow.configure(client, stub, config)
    await runtime.store.prepare()
    f_disp = await measure(
        "aio_run_no_wait", stats, n, lambda i: with_cbs[i].aio_run_no_wait({"note": "hi"})
    )
    sent = list(stub.requests)

    async def worker_run(i: int) -> None:
        req = sent[i]
        outcome = await runtime.execute_run(
            RunRequest(
                signature_key=req.signature_key,
                dispatch_id=req.dispatch_id,
                run_id=f"run-{i}",
                payload=req.input,
                body=_body,
                is_final_failure=_final,
            )
        )
        if not outcome.ran:
            raise RuntimeError(f"run {i} did not execute: {outcome.reason}")

    f_work = await measure("worker run (begin+finish)", stats, n, worker_run)

    parked = await _sign_many(n, concurrency)
    for sig in parked:
        await sig.suspend()
        await sig.aio_run_no_wait({"note": "parked"})
    before = len(stub.requests)
    f_replay = await measure("resume (parked run replay)", stats, n, lambda i: parked[i].resume())
    if len(stub.requests) - before != n:
        raise RuntimeError("resume did not replay every parked run exactly once")

    # Raw redis-py baselines, through the same counting client.
    sample = with_cbs[0]
    payload = runtime.store.encode(sample)
    mapping = dict(zip(payload[::2], payload[1::2], strict=True))
    raw = [f"{prefix}raw:{uuid.uuid4().hex}" for _ in range(n)]
    await client.set(f"{prefix}raw:str", "pending")
    b_hset = await measure(
        "HSET same fields", stats, n, lambda i: client.hset(raw[i], mapping=mapping)
    )
    b_hget = await measure("HGETALL", stats, n, lambda i: client.hgetall(raw[i]))
    b_get = await measure("GET", stats, n, lambda i: client.get(f"{prefix}raw:str"))

    rows: list[tuple[Figures, Figures | None]] = [
        (f_asign, b_hset),
        (f_plain, b_hset),
        (f_load, b_hget),
        (f_susp, b_get),
        (f_res, b_get),
        (f_upd, b_get),
        (f_disp, b_get),
        (f_work, None),
        (f_replay, None),
        (f_lock, None),
    ]

    # Throughput under concurrency.
    runtime = mageflow.configure(client, inmem, config)
    c_asign = await measure("asign (2 callbacks)", stats, n, asign_cbs, concurrency)
    raw_c = [f"{prefix}raw:{uuid.uuid4().hex}" for _ in range(n)]
    c_hset = await measure(
        "HSET same fields", stats, n, lambda i: client.hset(raw_c[i], mapping=mapping), concurrency
    )

    # Memory: each signature beside a raw hash holding the same fields, with a TTL.
    ttl_ms = int(config.active_ttl.total_seconds() * 1000)
    fresh_plain = await mageflow.asign("bench_task")
    two_ok = await mageflow.asign("bench_task", success_callbacks=[ok_cb, err_cb])
    samples = [
        ("plain signature", fresh_plain),
        ("1 ok + 1 error callback, 2 kwargs", with_cbs[-1]),
        ("2 success callbacks", two_ok),
        ("after a finished run (2 cb, 2 kw)", with_cbs[0]),
    ]
    mem_rows: list[list[str]] = []
    for label, sig in samples:
        key = f"{prefix}sig:{sig.key}"
        fields = await stats.hgetall(key)
        twin = f"{prefix}raw:{uuid.uuid4().hex}"
        await client.hset(twin, mapping=fields)
        await client.pexpire(twin, ttl_ms)
        mem_rows.append(
            [
                label,
                str(await stats.memory_usage(key, samples=0)),
                str(await stats.object("encoding", key)),
                str(max(len(v) for v in fields.values())),
                str(await stats.memory_usage(twin, samples=0)),
            ]
        )
    plain_payload = runtime.store.encode(plain[0])
    plain_map = dict(zip(plain_payload[::2], plain_payload[1::2], strict=True))
    listpack_value = (await stats.config_get("hash-max-listpack-value")).get(
        "hash-max-listpack-value", "?"
    )

    m0 = await _used_memory(stats)
    await _sign_many(memory_n, concurrency)
    m1 = await _used_memory(stats)
    per_sig = (m1 - m0) / memory_n
    m0 = await _used_memory(stats)
    keys = [f"{prefix}raw:{uuid.uuid4().hex}" for _ in range(memory_n)]
    for start in range(0, memory_n, 1000):
        pipe = client.pipeline(transaction=False)
        for key in keys[start : start + 1000]:
            pipe.hset(key, mapping=plain_map)
            pipe.pexpire(key, ttl_ms)
        await pipe.execute()
    m1 = await _used_memory(stats)
    per_raw = (m1 - m0) / memory_n

    # -- report ---------------------------------------------------------------
    missed = False

    def verdict(value: float, target: float | None) -> str:
        nonlocal missed
        if target is None:
            return "-"
        if value <= target:
            return f"<={fmt(target)} ok"
        missed = True
        return f"<={fmt(target)} MISSED"

    print(
        f"MageFlow store benchmark  ({flavour} {version}, n={n}, "
        f"concurrency={concurrency}, memory n={memory_n}, prefix {prefix})"
    )
    print()
    print("Per call, sequential. RT = network round trips; sent = commands the client sent;")
    print("server = commands executed (INFO commandstats: EVALSHA + each redis.call in it);")
    print("script us = server CPU time inside the scripts (EVALSHA usec in commandstats);")
    print("us/op = wall time; cpu = this Python process's CPU time per call.")
    cost_rows = []
    for f, b in rows:
        cost_rows.append(
            [
                f.label,
                fmt(f.rt),
                verdict(f.rt, TARGET_RT.get(f.label)),
                fmt(f.sent),
                fmt(f.server_total),
                fmt(f.scripts),
                fmt(f.in_script),
                f"{f.script_us:.1f}",
                f"{f.us_per_op:.0f}",
                f"{f.cpu_us_per_op:.0f}",
                b.label if b else "",
                fmt(b.rt) if b else "",
                fmt(b.server_total) if b else "",
                f"{b.us_per_op:.0f}" if b else "",
                f"{b.cpu_us_per_op:.0f}" if b else "",
            ]
        )
    print(
        table(
            [
                "operation",
                "RT",
                "target",
                "sent",
                "server",
                "scripts",
                "in-script",
                "script us",
                "us/op",
                "cpu",
                "| baseline",
                "RT",
                "server",
                "us/op",
                "cpu",
            ],
            cost_rows,
        )
    )
    print()
    print("Server commands per call:")
    width = max(len(f.label) for f, _ in rows)
    for f, _ in rows:
        print(f"  {f.label.ljust(width)}  {f.breakdown()}")
    for b in (b_hset, b_hget, b_get):
        print(f"  {('baseline ' + b.label).ljust(width)}  {b.breakdown()}")
    print()
    print(
        table(
            [
                "signatures created per second",
                "sequential",
                f"{concurrency} concurrent",
                "RT/op conc.",
            ],
            [
                [
                    f_asign.label,
                    f"{f_asign.per_second:.0f}",
                    f"{c_asign.per_second:.0f}",
                    fmt(c_asign.rt),
                ],
                [
                    "baseline HSET same fields",
                    f"{b_hset.per_second:.0f}",
                    f"{c_hset.per_second:.0f}",
                    fmt(c_hset.rt),
                ],
            ],
        )
    )
    print()
    mu_plain = int(mem_rows[0][1])
    print(
        table(
            [
                "memory per signature (bytes)",
                "used_memory delta/key",
                "target",
                "| baseline delta/key",
            ],
            [
                [
                    "plain signature",
                    f"{per_sig:.0f}",
                    verdict(max(mu_plain, per_sig), TARGET_MEMORY),
                    f"{per_raw:.0f}",
                ]
            ],
        )
    )
    print()
    print(
        table(
            [
                "MEMORY USAGE (bytes)",
                "signature",
                "encoding",
                "longest value",
                "| baseline same fields",
            ],
            mem_rows,
        )
    )
    print(
        f"(hash-max-listpack-value = {listpack_value}: a longer field value turns the "
        "hash into a hashtable)"
    )
    print()
    print("Notes: worker run = BEGIN + FINISH scripts, two moments of the run, so 2 RT by")
    print("design. resume with a parked run = one TRANSITION script (it returns the task")
    print("name with the replay). lock_task = LOCK (returns the signature) + UNLOCK.")
    return not missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="calls per measured operation")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument(
        "--memory-n", type=int, default=10_000, help="signatures created for the used_memory delta"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    if args.n < 1 or args.concurrency < 1 or args.memory_n < 1:
        parser.error("--n, --concurrency and --memory-n must be positive")
    started = time.perf_counter()
    with redis_server() as url:
        ok = asyncio.run(run(url, args.n, args.concurrency, args.memory_n))
    print(f"({time.perf_counter() - started:.1f} s)")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
