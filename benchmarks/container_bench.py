"""Chains and swarms on a real Hatchet engine, beside the same work in native Hatchet.

Run from the repository root::

    uv run python benchmarks/container_bench.py [--members N] [--steps S] [--check]

Defaults: 2 000 members (the issue's 10 000 take ~8 min on 2 cores: pass
``--members 10000``), 100 steps, 100 worker slots; about 2 minutes in all.

It starts Redis (``tests/_redis.py``: REDIS_URL, else a testcontainer, else the
bundled valkey), one Hatchet engine (``tests/e2e/_engine.py``) and one worker
subprocess (this module with ``--worker``, ``--slots`` slots) serving every
task. Then it measures, one after the other:

* MageFlow swarm: N no-op members (signed beforehand), ``max_concurrency``
  equal to the worker's slots, closed, one success callback; timed from
  ``swarm.aio_run_no_wait()`` until that callback's body runs;
* native bulk: N runs of a plain Hatchet no-op task triggered in bulk
  (``aio_run_many_no_wait``, i.e. ``aio_run_many`` without collecting results,
  which the SDK does one subscription at a time, far slower than the runs),
  timed until the N-th body has run (the bodies count themselves in Redis);
* MageFlow chain: S steps, each returning its input + 1 into the next one's
  ``ReturnValue`` field, until the chain's success callback's body runs;
* native chain: S plain Hatchet runs, each triggering the next from its body
  (detached, not as a child, as MageFlow dispatches), until the last body runs.

Counted in the worker process (a ``redis.asyncio`` connection subclass, see
``_common.py``): Redis round trips and commands MageFlow's client sends, by
command (EVALSHA by the store's script name); engine runs delivered per task
(calls of ``MageflowRuntime.execute_run``, which every run of a signature goes
through, including runs that are skipped, parked or only drain an outbox); and
task-body invocations; wall time inside execute_run, the BEGIN and FINISH
scripts and the trigger of the next run. Commands the Redis server executed
(including every ``redis.call`` inside the scripts) come from ``INFO commandstats``.

hatchet-sdk triggers a run with a blocking gRPC call in ``asyncio.to_thread``,
so triggers from the worker share the loop's default executor (min(32, cores + 4)
threads); ``--dispatch-threads N`` gives the worker's loop a bigger one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import itertools
import json
import os
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis.asyncio as aioredis  # noqa: E402
from hatchet_sdk import (  # noqa: E402
    ConcurrencyExpression,
    ConcurrencyLimitStrategy,
    Context,
    EmptyModel,
    Hatchet,
)
from hatchet_sdk.runnables import contextvars as hatchet_ctx  # noqa: E402
from mageflow import Mageflow, MageflowConfig, ReturnValue, SwarmConfig  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from benchmarks._common import (  # noqa: E402
    CountingConnection,
    Tally,
    command_stats,
    fmt,
    table,
    tree_cpu,
)

# The issue asks for 10 000 members; on the 2-core machine this was written on that
# took 7.8 min in all (swarm 271 s, native bulk 137 s), so the default is lower.
SPEC_MEMBERS = 10_000
DEFAULT_MEMBERS = 2_000
DEFAULT_STEPS = 100
DEFAULT_SLOTS = 100
TARGET_RUNS_PER_MEMBER = 1.0
TARGET_RT_PER_COMPLETION = 2.0
TARGET_SWARM_RATIO = 1.15  # issue 10: the swarm's wall time beside native bulk

NOOP = "cbench-noop"
STEP = "cbench-step"
DONE = "cbench-done"
NATIVE_NOOP = "cbench-native-noop"
NATIVE_CAPPED = "cbench-native-capped"
NATIVE_STEP = "cbench-native-step"
STATS = "cbench-stats"
TUNE = "cbench-tune"


class NoopIn(BaseModel):
    i: int = 0
    # native runs only: count completions under reply_to, push there at the n-th
    reply_to: str = ""
    n: int = 0


class StepIn(BaseModel):
    prev: ReturnValue[int] = 0


class DoneIn(BaseModel):
    results: ReturnValue[Any] = None
    reply_to: str


class TuneIn(BaseModel):
    """Settings of the worker's adapter for the next workloads (``--variants``)."""

    in_flight: int | None = None  # HatchetTaskManager.max_in_flight


class NativeStepIn(BaseModel):
    i: int
    n: int
    reply_to: str


# -- worker-side counters (only meaningful in the worker process) --------------

BY_COMMAND: Counter[str] = Counter()
SCRIPT_NAMES: dict[str, str] = {}
RUNS: Counter[str] = Counter()  # engine runs delivered to execute_run, per task
BODIES: Counter[str] = Counter()  # task-body invocations, per task
HANDSHAKE = {"connections": 0, "round_trips": 0}  # new connections while the pool grows
TIMERS: dict[str, list[float]] = {}  # name -> [calls, seconds], wall time inside the call
ENGINE_CALLS = {"calls": 0, "runs": 0, "seconds": 0.0}  # gRPC trigger calls from the worker


class ScriptCountingConnection(CountingConnection):
    """Also tallies commands by name; an EVALSHA by the store's script name."""

    def pack_command(self, *args: Any) -> list[bytes]:
        name = str(args[0]).upper() if args else "?"
        if name == "EVALSHA" and len(args) > 1:
            name = f"EVALSHA {SCRIPT_NAMES.get(str(args[1]), str(args[1])[:8])}"
        BY_COMMAND[name] += 1
        return super().pack_command(*args)

    async def connect_check_health(self, *args: Any, **kwargs: Any) -> None:
        if self.is_connected:
            return
        self._handshaking = True
        try:
            await super().connect_check_health(*args, **kwargs)
        finally:
            self._handshaking = False
        HANDSHAKE["connections"] += 1

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if getattr(self, "_handshaking", False):
            HANDSHAKE["round_trips"] += 1
        await super().send_packed_command(command, check_health)


_APART = ("HMGET", "EVALSHA RECOVER", "EVALSHA SENT")


def snapshot() -> dict[str, Any]:
    return {
        "round_trips": Tally.round_trips,
        "commands": Tally.commands,
        "connections": HANDSHAKE["connections"],
        "handshake_round_trips": HANDSHAKE["round_trips"],
        "by_command": dict(BY_COMMAND),
        "runs": dict(RUNS),
        "bodies": dict(BODIES),
        "timers": {name: list(v) for name, v in TIMERS.items()},
        "engine_calls": dict(ENGINE_CALLS),
    }


def timed(obj: Any, attr: str, name: str) -> None:
    """Shadow the async method ``obj.attr`` on the instance with a timing wrapper."""
    inner: Callable[..., Awaitable[Any]] = getattr(obj, attr)
    slot = TIMERS.setdefault(name, [0, 0.0])

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await inner(*args, **kwargs)
        finally:
            slot[0] += 1
            slot[1] += time.perf_counter() - started

    setattr(obj, attr, wrapper)


def counted_triggers(admin: Any) -> None:
    """Count the worker's trigger calls to the engine (run in dispatch threads)."""
    bulk, single = admin.run_workflows, admin.run_workflow

    def run_workflows(workflows: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return bulk(workflows, *args, **kwargs)
        finally:
            ENGINE_CALLS["calls"] += 1
            ENGINE_CALLS["runs"] += len(workflows)
            ENGINE_CALLS["seconds"] += time.perf_counter() - started

    def run_workflow(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return single(*args, **kwargs)
        finally:
            ENGINE_CALLS["calls"] += 1
            ENGINE_CALLS["runs"] += 1
            ENGINE_CALLS["seconds"] += time.perf_counter() - started

    admin.run_workflows, admin.run_workflow = run_workflows, run_workflow


_PARENT_VARS: tuple[contextvars.ContextVar[Any], ...] = (
    hatchet_ctx.ctx_workflow_run_id,
    hatchet_ctx.ctx_step_run_id,
    hatchet_ctx.ctx_action_key,
    hatchet_ctx.ctx_additional_metadata,
    hatchet_ctx.ctx_worker_id,
)


async def _detached(make: Callable[[], Awaitable[Any]]) -> Any:
    """Await ``make()`` outside the current run's context, so it is not a child run."""
    context = contextvars.copy_context()
    for var in _PARENT_VARS:
        context.run(var.set, None)
    return await asyncio.get_running_loop().create_task(make(), context=context)


class BenchApp:
    """The benchmark's tasks on one Mageflow client; ``rec`` is an uncounted client."""

    def __init__(
        self,
        hatchet: Hatchet,
        redis: aioredis.Redis,
        rec: aioredis.Redis,
        prefix: str,
        cap: int = DEFAULT_SLOTS,
    ) -> None:
        self.mf = Mageflow(hatchet, redis, config=MageflowConfig(key_prefix=prefix))
        self.rec = rec
        mf = self.mf
        plain = mf.hatchet

        @mf.task(name=NOOP, input_validator=NoopIn, retries=1)
        async def noop(msg: NoopIn) -> None:
            BODIES[NOOP] += 1

        @mf.task(name=STEP, input_validator=StepIn, retries=1)
        async def step(msg: StepIn) -> int:
            BODIES[STEP] += 1
            return msg.prev + 1

        @mf.task(name=DONE, input_validator=DoneIn, retries=1)
        async def done(msg: DoneIn) -> None:
            BODIES[DONE] += 1
            value = len(msg.results) if isinstance(msg.results, list) else msg.results
            await rec.rpush(msg.reply_to, json.dumps({"at": time.time(), "value": value}))

        @plain.task(name=NATIVE_NOOP, input_validator=NoopIn, retries=1)
        async def native_noop(msg: NoopIn, ctx: Context) -> dict[str, Any]:
            BODIES[NATIVE_NOOP] += 1
            if msg.reply_to and await rec.incr(f"{msg.reply_to}:count") == msg.n:
                await rec.rpush(msg.reply_to, json.dumps({"at": time.time(), "value": msg.n}))
            return {}

        # native Hatchet's own way to run N tasks at most `cap` at a time: one
        # concurrency group per bulk run (its reply_to), as a swarm's cap
        @plain.task(
            name=NATIVE_CAPPED,
            input_validator=NoopIn,
            retries=1,
            concurrency=ConcurrencyExpression(
                expression="input.reply_to",
                max_runs=cap,
                limit_strategy=ConcurrencyLimitStrategy.GROUP_ROUND_ROBIN,
            ),
        )
        async def native_capped(msg: NoopIn, ctx: Context) -> dict[str, Any]:
            BODIES[NATIVE_CAPPED] += 1
            if msg.reply_to and await rec.incr(f"{msg.reply_to}:count") == msg.n:
                await rec.rpush(msg.reply_to, json.dumps({"at": time.time(), "value": msg.n}))
            return {}

        @plain.task(name=NATIVE_STEP, input_validator=NativeStepIn, retries=1)
        async def native_step(msg: NativeStepIn, ctx: Context) -> dict[str, Any]:
            BODIES[NATIVE_STEP] += 1
            if msg.i < msg.n:
                nxt = NativeStepIn(i=msg.i + 1, n=msg.n, reply_to=msg.reply_to)
                await _detached(lambda: native_step.aio_run_no_wait(nxt))
            else:
                await rec.rpush(msg.reply_to, json.dumps({"at": time.time(), "value": msg.i}))
            return {"i": msg.i}

        @plain.task(name=STATS)
        async def stats(input: EmptyModel, ctx: Context) -> dict[str, Any]:
            return snapshot()

        @plain.task(name=TUNE, input_validator=TuneIn)
        async def tune(msg: TuneIn, ctx: Context) -> dict[str, Any]:
            manager = mf.runtime.manager
            if msg.in_flight is not None:
                manager.max_in_flight = msg.in_flight  # type: ignore[union-attr]
            return {"in_flight": manager.max_in_flight}  # type: ignore[union-attr]

        self.noop, self.step, self.done = noop, step, done
        self.native_noop, self.native_step, self.stats = native_noop, native_step, stats
        self.native_capped = native_capped
        self.tune = tune
        self.workflows = [noop, step, done, native_noop, native_capped, native_step, stats, tune]


def worker_main() -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("hatchet").setLevel(logging.WARNING)  # no line per run
    url = os.environ["REDIS_URL"]
    slots = int(os.environ.get("CBENCH_SLOTS", str(DEFAULT_SLOTS)))
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        connection_class=ScriptCountingConnection,
        decode_responses=True,
        max_connections=max(100, slots + 20),
    )
    app = BenchApp(
        Hatchet(),
        aioredis.Redis(connection_pool=pool),
        aioredis.from_url(url, decode_responses=True),
        os.environ["CBENCH_PREFIX"],
        cap=slots,
    )
    runtime = app.mf.runtime
    for script_name, script in runtime.store.scripts.items():
        SCRIPT_NAMES[script.sha] = script_name.upper()
    inner = runtime.execute_run

    async def counted(request: Any, *args: Any, **kwargs: Any) -> Any:
        RUNS[request.task_name] += 1
        return await inner(request, *args, **kwargs)

    runtime.execute_run = counted  # type: ignore[method-assign]  # this process only
    timed(runtime, "execute_run", "execute_run")
    timed(runtime.store, "begin", "BEGIN")
    timed(runtime.store, "finish", "FINISH")
    timed(runtime.manager, "dispatch", "trigger")
    counted_triggers(app.mf.hatchet._client.admin)
    threads = int(os.environ.get("CBENCH_DISPATCH_THREADS", "0"))

    async def executor() -> AsyncIterator[None]:
        # hatchet-sdk triggers a run with a blocking gRPC call in asyncio.to_thread,
        # i.e. on the loop's default executor (min(32, cores + 4) threads)
        if threads:
            asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(threads))
        yield

    app.mf.worker("cbench-worker", slots=slots, workflows=app.workflows, lifespan=executor).start()


# -- the benchmark ----------------------------------------------------------------


@dataclass
class Result:
    label: str
    n: int  # members or steps
    seconds: float
    runs: float | None = None  # engine runs per member
    bodies: float | None = None  # body invocations per member
    rt_run: float | None = None  # worker RT per MageFlow run (member or callback)
    rt: float | None = None  # worker RT per member, callbacks included
    sent: float | None = None  # commands sent per member
    server: float | None = None  # commands the server executed per member
    connections: int = 0  # connections the worker's pool opened meanwhile
    handshake_rt: int = 0
    breakdown: str = ""
    timings: str = ""
    cpu: str = ""  # CPU seconds per member of each process of the benchmark's tree

    @property
    def per_second(self) -> float:
        return self.n / self.seconds if self.seconds else float("inf")


def delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        name: after[name] - before[name]
        for name in ("round_trips", "commands", "connections", "handshake_round_trips")
    }
    for name in ("by_command", "runs", "bodies"):
        a, b = Counter(after[name]), Counter(before[name])
        out[name] = {k: a[k] - b.get(k, 0) for k in a if a[k] - b.get(k, 0)}
    out["timers"] = {
        k: [
            v[0] - before["timers"].get(k, [0, 0.0])[0],
            v[1] - before["timers"].get(k, [0, 0.0])[1],
        ]
        for k, v in after["timers"].items()
    }
    return out


class Bench:
    def __init__(self, app: BenchApp, stats: aioredis.Redis, prefix: str, wait: float) -> None:
        self.app = app
        self.stats = stats
        self.prefix = prefix
        self.wait = wait
        self.submitted = 0.0

    async def worker_stats(self) -> dict[str, Any]:
        return dict(await self.app.stats.aio_run(EmptyModel()))

    async def reply(self, key: str, what: str, timeout: float) -> dict[str, Any]:
        # short BLPOPs: redis-py >= 8 reads with a 5 s socket timeout by default
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = await self.app.rec.blpop([key], timeout=2)
            if got is not None:
                return dict(json.loads(got[1]))
        raise TimeoutError(f"{what}: not done within {timeout:.0f}s")

    async def measured(
        self, label: str, n: int, task: str, go: Callable[[], Awaitable[None]]
    ) -> Result:
        before, server0 = await self.worker_stats(), await command_stats(self.stats)
        cpu0 = tree_cpu(os.getpid())
        started = time.perf_counter()
        await go()
        seconds = time.perf_counter() - started
        cpu1 = tree_cpu(os.getpid())
        after, server1 = await self.worker_stats(), await command_stats(self.stats)
        d = delta(after, before)
        server = sum(server1[k] - server0.get(k, 0) for k in server1)
        used = {k: cpu1[k] - cpu0.get(k, 0.0) for k in cpu1}
        cpu = ", ".join(
            f"{k} {v / n * 1000:.2f}"
            for k, v in sorted(used.items(), key=lambda kv: -kv[1])
            if v > 0.005
        )
        cpu += f" (all {sum(used.values()) / n * 1000:.2f} ms over {seconds:.1f} s)"
        calls = {k: after["engine_calls"][k] - before["engine_calls"][k] for k in ENGINE_CALLS}
        if calls["calls"]:
            cpu += (
                f"; worker trigger calls {calls['calls']}, {calls['runs'] / calls['calls']:.1f} "
                f"runs each, {calls['seconds'] / calls['calls'] * 1000:.0f} ms each"
            )
        if task not in (NOOP, STEP):
            return Result(label, n, seconds, bodies=d["bodies"].get(task, 0) / n, cpu=cpu)
        # steady state: round trips of connection handshakes (the pool growing) apart
        rt = d["round_trips"] - d["handshake_round_trips"]
        mf_runs = sum(d["runs"].values())
        by = sorted(d["by_command"].items(), key=lambda kv: (-kv[1], kv[0]))
        return Result(
            label,
            n,
            seconds,
            runs=d["runs"].get(task, 0) / n,
            bodies=d["bodies"].get(task, 0) / n,
            # per completion: BEGIN + FINISH. Counted apart (they are in the
            # breakdown): the success callback's one read of the swarm's results
            # hash, in HMGETs of 1 000 (issue 10), the worker's periodic
            # recover() sweep, and the run ids it writes on their own when no
            # BEGIN/FINISH came for RunIds.linger (a quiet worker, e.g. a
            # swarm's end), none of them per completion; RT/member counts all
            rt_run=(rt - sum(d["by_command"].get(c, 0) for c in _APART)) / mf_runs
            if mf_runs
            else None,
            rt=rt / n,
            sent=d["commands"] / n,
            server=server / n,
            connections=d["connections"],
            handshake_rt=d["handshake_round_trips"],
            breakdown=", ".join(f"{k} {fmt(round(v / n, 3))}" for k, v in by),
            timings=", ".join(
                f"{k} {v[1] / v[0] * 1000:.1f} ms x {fmt(round(v[0] / n, 2))}"
                for k, v in d["timers"].items()
                if v[0]
            ),
            cpu=cpu,
        )

    async def swarm(self, n: int, cap: int, prefetch: int = 0) -> tuple[Result, float]:
        mf = self.app.mf
        reply_to = f"{self.prefix}reply:swarm:{uuid.uuid4().hex[:8]}"
        t0 = time.perf_counter()
        # one asign_many (issue 10): O(N / 1000) round trips
        members = await mf.asign_many(NOOP, [{"i": i} for i in range(n)])
        done = await mf.asign(DONE, reply_to=reply_to)
        swarm = await mf.aswarm(
            tasks=members,
            success_callbacks=[done],
            config=SwarmConfig(max_concurrency=cap, prefetch=prefetch),
            is_swarm_closed=True,
        )
        setup = time.perf_counter() - t0

        async def go() -> None:
            await swarm.aio_run_no_wait()
            got = await self.reply(reply_to, f"swarm of {n}", self.wait)
            if got["value"] != n:
                raise RuntimeError(f"swarm callback got {got['value']} results, expected {n}")

        label = f"MageFlow swarm ({n}, cap {cap}" + (f", prefetch {prefetch})" if prefetch else ")")
        return await self.measured(label, n, NOOP, go), setup

    async def native_bulk(self, n: int, metadata: bool = False, cap: int = 0) -> Result:
        task = self.app.native_capped if cap else self.app.native_noop
        reply_to = f"{self.prefix}reply:bulk:{uuid.uuid4().hex[:8]}"

        def meta(i: int) -> dict[str, str] | None:
            # what MageFlow's dispatches carry (mageflow.engine.DispatchRequest.metadata())
            if not metadata:
                return None
            return {
                "mageflow_signature_key": f"task-{uuid.uuid4().hex}",
                "mageflow_dispatch_id": f"{uuid.uuid4().hex}:{i}",
                "mageflow_task": NATIVE_NOOP,
            }

        items = [
            task.create_bulk_run_item(
                input=NoopIn(i=i, reply_to=reply_to, n=n), additional_metadata=meta(i)
            )
            for i in range(n)
        ]

        async def go() -> None:
            # bulk trigger; done when the n-th body has run (the worker counts them
            # in Redis), not when the SDK has collected n results, which it does
            # one subscription at a time and far slower than the runs themselves
            t0 = time.perf_counter()
            await task.aio_run_many_no_wait(items)
            self.submitted = time.perf_counter() - t0
            await self.reply(reply_to, f"native bulk of {n}", self.wait)

        if cap:
            return await self.measured(
                f"native aio_run_many ({n}), concurrency {cap}", n, NATIVE_CAPPED, go
            )
        return await self.measured(f"native aio_run_many ({n})", n, NATIVE_NOOP, go)

    async def chain(self, steps: int) -> Result:
        mf = self.app.mf
        reply_to = f"{self.prefix}reply:chain:{uuid.uuid4().hex[:8]}"
        done = await mf.asign(DONE, reply_to=reply_to)
        chain = await mf.achain([STEP] * steps, success=[done])

        async def go() -> None:
            await chain.aio_run_no_wait(StepIn(prev=0))
            got = await self.reply(reply_to, f"chain of {steps}", self.wait)
            if got["value"] != steps:
                raise RuntimeError(f"chain ended with {got['value']}, expected {steps}")

        return await self.measured(f"MageFlow chain ({steps} steps)", steps, STEP, go)

    async def native_chain(self, steps: int) -> Result:
        reply_to = f"{self.prefix}reply:native-chain:{uuid.uuid4().hex[:8]}"

        async def go() -> None:
            first = NativeStepIn(i=1, n=steps, reply_to=reply_to)
            await self.app.native_step.aio_run_no_wait(first)
            await self.reply(reply_to, f"native chain of {steps}", self.wait)

        return await self.measured(f"native chain ({steps} steps)", steps, NATIVE_STEP, go)


async def run(
    url: str,
    engine: Any,
    members: int,
    steps: int,
    slots: int,
    prefix: str,
    wait: float,
    variants: list[dict[str, int]],
    native_metadata: bool = False,
    prefetch: int = 0,
    pairs: int = 1,
    native_capped: bool = False,
) -> bool:
    client = aioredis.Redis(
        connection_pool=aioredis.BlockingConnectionPool.from_url(
            url, connection_class=CountingConnection, decode_responses=True, max_connections=100
        )
    )
    stats = aioredis.from_url(url, decode_responses=True)
    rec = aioredis.from_url(url, decode_responses=True)
    app = BenchApp(engine.client(), client, rec, prefix, cap=slots)
    await app.mf.runtime.store.prepare()
    bench = Bench(app, stats, prefix, wait)
    try:
        # warm-up: opens the worker's connections (pool of `slots`), registers runs
        warm = min(2 * slots, max(members, 20))
        await bench.swarm(warm, slots, prefetch)
        await bench.native_bulk(warm)
        await bench.chain(3)
        await bench.native_chain(3)

        load0 = os.getloadavg()
        swarm, setup = await bench.swarm(members, slots, prefetch)
        if pairs > 1:
            swarm.label += " #1"
        bulk = await bench.native_bulk(members)
        chain = await bench.chain(steps)
        nchain = await bench.native_chain(steps)
        extra: list[Result] = []
        default = await app.tune.aio_run(TuneIn())
        for round_no in range(1, pairs + 1):
            tag = f" #{round_no}" if pairs > 1 else ""
            if round_no > 1:
                # the whole set again: pairs alternate, so a drift of the machine
                # load reaches every setting alike
                again, _ = await bench.swarm(members, slots, prefetch)
                again.label += tag
                extra.append(again)
                extra.append(await bench.native_bulk(members))
                extra[-1].label += " again" + tag
            # the same swarm again with other adapter settings, then native again:
            # side by side under the same load
            for settings in variants:
                # prefetch is the swarm's own setting; the rest the worker's adapter's
                tune = {k: v for k, v in settings.items() if k != "prefetch"}
                await app.tune.aio_run(TuneIn(**tune))
                again, _ = await bench.swarm(members, slots, settings.get("prefetch", prefetch))
                again.label += " " + ",".join(f"{k}={v}" for k, v in settings.items()) + tag
                extra.append(again)
                await app.tune.aio_run(TuneIn(in_flight=default["in_flight"]))
                # native right after each: a pair under the same load
                extra.append(await bench.native_bulk(members))
                extra[-1].label += " again" + tag
            if native_capped:
                extra.append(await bench.native_bulk(members, cap=slots))
                extra[-1].label += tag
        if native_metadata:
            extra.append(await bench.native_bulk(members, metadata=True))
            extra[-1].label += " + metadata"
        load1 = os.getloadavg()
        print(
            "\n(load average 1/5/15 min, 2 CPUs here: before "
            + "/".join(f"{x:.1f}" for x in load0)
            + ", after "
            + "/".join(f"{x:.1f}" for x in load1)
            + ")"
        )
        print(
            f"\n(native bulk submission of {members} runs, aio_run_many_no_wait: "
            f"{bench.submitted:.2f} s)"
        )
    finally:
        await stats.aclose()
        await rec.aclose()
        await client.aclose()
    return report(swarm, setup, bulk, chain, nchain, members, steps, slots, extra)


def _cpu_all(r: Result) -> float:
    """The CPU ms per member of every process of the tree, from ``Result.cpu``."""
    _, _, rest = r.cpu.partition("(all ")
    try:
        return float(rest.split(" ", 1)[0])
    except ValueError:
        return float("nan")


def report(
    swarm: Result,
    setup: float,
    bulk: Result,
    chain: Result,
    nchain: Result,
    members: int,
    steps: int,
    slots: int,
    extra: list[Result],
) -> bool:
    missed = False

    def verdict(ok: bool, text: str) -> str:
        nonlocal missed
        missed = missed or not ok
        return f"{text} {'ok' if ok else 'MISSED'}"

    def opt(value: float | None) -> str:
        return "-" if value is None else fmt(round(value, 2))

    rows = [
        [
            r.label,
            f"{r.seconds:.2f}",
            f"{r.per_second:.1f}",
            opt(r.runs),
            opt(r.bodies),
            opt(r.rt_run),
            opt(r.rt),
            opt(r.sent),
            opt(r.server),
        ]
        for r in (swarm, bulk, chain, nchain, *extra)
    ]
    print()
    print(
        f"Chains and swarms on a real Hatchet engine  (members={members}, steps={steps}, "
        f"worker slots={slots}, swarm max_concurrency={slots})"
    )
    print(
        table(
            [
                "workload",
                "wall s",
                "members/s",
                "runs/member",
                "bodies/member",
                "RT/run",
                "RT/member",
                "sent/member",
                "server/member",
            ],
            rows,
        )
    )
    print(f"(signing {members} members + creating the swarm beforehand: {setup:.2f} s)")
    if members == DEFAULT_MEMBERS:
        print(
            f"(default --members {DEFAULT_MEMBERS}, not the issue's {SPEC_MEMBERS}: on 2 cores "
            f"{SPEC_MEMBERS} took ~8 min in all; run --members {SPEC_MEMBERS} for the full size)"
        )
    print()
    print("Worker-side Redis commands per member:")
    for label, r in (("swarm member", swarm), ("chain step", chain)):
        print(f"  {label}  {r.breakdown}")
        if r.connections:
            print(
                f"  {' ' * len(label)}  (the pool opened {r.connections} connections meanwhile: "
                f"{r.handshake_rt} handshake round trips, left out of RT/run and RT/member)"
            )
    print()
    print("Worker wall time per call (x calls per member); execute_run spans BEGIN, the body,")
    print("FINISH and the trigger of what comes next:")
    for label, r in (("swarm member", swarm), ("chain step", chain)):
        print(f"  {label}  {r.timings}")
    for r in extra:
        if r.timings:
            print(f"  {r.label}  {r.timings}")
    print()
    print("CPU ms per member (or step) by process of this benchmark's tree:")
    for r in (swarm, bulk, chain, nchain, *extra):
        print(f"  {r.label}  {r.cpu}")
    print()
    swarm_ratio = swarm.seconds / bulk.seconds
    chain_ratio = chain.seconds / nchain.seconds
    pairs = [(swarm, bulk)] + [
        (a, b) for a, b in itertools.pairwise(extra) if a.runs is not None and b.runs is None
    ]
    print("Swarm / the native bulk run right after it (wall, CPU per member):")
    by_setting: dict[str, list[tuple[float, float]]] = {}
    for a, b in pairs:
        wall, cpu = a.seconds / b.seconds, _cpu_all(a) / _cpu_all(b)
        print(f"  {a.label}  {wall:.2f}x wall, {cpu:.2f}x CPU")
        by_setting.setdefault(a.label.split(" #")[0], []).append((wall, cpu))
    capped = [
        (a, b)
        for a, b in itertools.pairwise([bulk, *extra])
        if b.label.startswith("native") and "concurrency" in b.label
    ]
    if capped:
        print()
        print("Native with the swarm's cap (a Hatchet concurrency limit) / the native bulk")
        print("run before it, and each swarm of the same round / the capped native run:")
        for a, b in capped:
            tag = b.label.rpartition(" #")[2] if " #" in b.label else ""
            swarms = [r for r in (swarm, *extra) if r.runs is not None and r.label.endswith(tag)]
            vs = ", ".join(f"{r.seconds / b.seconds:.2f}x" for r in swarms)
            print(f"  {b.label}  {b.seconds / a.seconds:.2f}x native bulk; swarms {vs}")
    if any(len(v) > 1 for v in by_setting.values()):
        print()
        print("Median over the pairs of each setting (wall, CPU per member):")
        for label, ratios in by_setting.items():
            walls = ", ".join(f"{w:.2f}" for w, _ in ratios)
            print(
                f"  {label}  {statistics.median(w for w, _ in ratios):.2f}x wall "
                f"({walls}), {statistics.median(c for _, c in ratios):.2f}x CPU"
            )
    print()
    print("Targets:")
    for label, r in (("swarm member", swarm), ("chain step", chain)):
        print(
            f"  engine runs per {label:<13} "
            + verdict(r.runs == TARGET_RUNS_PER_MEMBER, f"{opt(r.runs)} (exactly 1)")
        )
    for label, r in (("swarm run", swarm), ("chain run", chain)):
        rt = r.rt_run if r.rt_run is not None else float("inf")
        print(
            f"  Redis RT per {label:<16} "
            + verdict(rt <= TARGET_RT_PER_COMPLETION, f"{opt(rt)} (<= 2)")
        )
    # with --pairs, the first setting's median: one pair moves by +-15 % here
    first = by_setting.get(swarm.label.split(" #")[0], [])
    if len(first) > 1:
        swarm_ratio = statistics.median(w for w, _ in first)
    print(
        "  swarm wall / native bulk      "
        + verdict(
            swarm_ratio <= TARGET_SWARM_RATIO,
            f"{swarm_ratio:.2f}x (<= {TARGET_SWARM_RATIO}x"
            + (f", median of {len(first)} pairs)" if len(first) > 1 else ")"),
        )
    )
    print(f"  (chain wall / native chain    {chain_ratio:.2f}x, no target)")
    print()
    print("runs/member: engine runs delivered to the worker for the member task (every run")
    print("of a signature goes through execute_run, skipped or not) per member; bodies/member:")
    print("task-body invocations. RT/run: round trips of MageFlow's Redis client in the worker")
    print("per MageFlow run completed (members and the container's callback: BEGIN + FINISH);")
    print("RT/member: the same total per member. server/member: INFO commandstats delta")
    print("(every redis.call inside the scripts too) over the measured span, per member.")
    return not missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=DEFAULT_MEMBERS, help="swarm members")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="chain steps")
    parser.add_argument(
        "--slots", type=int, default=DEFAULT_SLOTS, help="worker slots = swarm max_concurrency"
    )
    parser.add_argument(
        "--dispatch-threads",
        type=int,
        default=0,
        help="size of the worker loop's default executor (0: asyncio's default)",
    )
    parser.add_argument(
        "--variants",
        default="",
        help="run the swarm again with other settings, e.g. 'prefetch=0;in_flight=4'",
    )
    parser.add_argument(
        "--native-metadata",
        action="store_true",
        help="also run native bulk with MageFlow's three additional-metadata keys per run",
    )
    parser.add_argument(
        "--prefetch",
        type=int,
        default=DEFAULT_SLOTS,
        help="the swarm's SwarmConfig.prefetch (members sent ahead of free places; 0: none)",
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=1,
        help="run each swarm setting and its native run this many times, alternating; "
        "prints the median ratio of each setting",
    )
    parser.add_argument(
        "--native-capped",
        action="store_true",
        help="also run the native bulk with a Hatchet concurrency limit of --slots "
        "(native Hatchet's own bounded concurrency), once per pair round",
    )
    parser.add_argument("--wait", type=float, default=900.0, help="deadline per workload (s)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main()
        return 0
    if args.members < 1 or args.steps < 2 or args.slots < 1 or args.pairs < 1:
        parser.error("--members, --slots and --pairs must be positive, --steps at least 2")

    from tests._redis import redis_server
    from tests.e2e._engine import start_engine
    from tests.e2e._worker import WorkerProcess

    started = time.perf_counter()
    prefix = f"cbench:{uuid.uuid4().hex[:8]}:"
    with redis_server() as url:
        engine = start_engine()
        worker = WorkerProcess(
            "benchmarks.container_bench",
            engine.worker_env(
                {
                    "REDIS_URL": url,
                    "CBENCH_PREFIX": prefix,
                    "CBENCH_SLOTS": str(args.slots),
                    "CBENCH_DISPATCH_THREADS": str(args.dispatch_threads),
                }
            ),
            args=["--worker"],
            name="cbench-worker",
        )
        try:
            worker.start()
            variants = [
                {k.strip(): int(v) for k, v in (kv.split("=") for kv in part.split(","))}
                for part in args.variants.split(";")
                if part.strip()
            ]
            ok = asyncio.run(
                run(
                    url,
                    engine,
                    args.members,
                    args.steps,
                    args.slots,
                    prefix,
                    args.wait,
                    variants,
                    args.native_metadata,
                    args.prefetch,
                    args.pairs,
                    args.native_capped,
                )
            )
        finally:
            worker.stop()
            engine.stop()
    print(f"({time.perf_counter() - started:.1f} s in all; worker log {worker.log_path})")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    # Run as a script, delegate to the importable module so that the input models
    # are stored as ``benchmarks.container_bench:...`` for the worker to import.
    from benchmarks import container_bench

    sys.exit(container_bench.main())
