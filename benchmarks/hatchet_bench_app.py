"""Tasks of the Hatchet benchmark, shared by the benchmark and its worker subprocess.

Two chains, each of two runs:

* MageFlow: ``bench-step`` (a Mageflow task) with one success callback,
  ``bench-callback``, which receives the step's return value through a
  ``ReturnValue`` field.
* native: ``native-first`` (a plain Hatchet task) triggers ``native-second``
  with ``aio_run(..., wait_for_result=False)`` from inside its body, so Hatchet
  makes ``native-second`` a child run of ``native-first``.
* native, detached (a second reference): ``native-first-detached`` does the same
  with the parent context cleared, as MageFlow's ``HatchetTaskManager.dispatch``
  does for callbacks, so ``native-second`` is a run of its own.

The last run of each chain takes ``time.monotonic()`` (CLOCK_MONOTONIC, the same
clock in every process on Linux) as its first statement and pushes it, with the
first run's start time, to the per-iteration list named by ``reply_to``; the
benchmark waits on that list with BLPOP. That push goes through ``rec``, a
client of its own, so it never shows up in the counts of MageFlow's client.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from hatchet_sdk import Context, EmptyModel, Hatchet
from hatchet_sdk.runnables import contextvars as hatchet_ctx
from mageflow import Mageflow, MageflowConfig, ReturnValue
from pydantic import BaseModel

STEP = "bench-step"
CALLBACK = "bench-callback"
NATIVE_FIRST = "native-first"
NATIVE_SECOND = "native-second"
NATIVE_FIRST_DETACHED = "native-first-detached"
STATS = "bench-stats"


# The context variables that make Hatchet treat a run triggered inside a task as
# its child; the same list as mageflow_hatchet.manager clears for callbacks.
_PARENT_VARS: tuple[contextvars.ContextVar[Any], ...] = (
    hatchet_ctx.ctx_workflow_run_id,
    hatchet_ctx.ctx_step_run_id,
    hatchet_ctx.ctx_action_key,
    hatchet_ctx.ctx_additional_metadata,
    hatchet_ctx.ctx_worker_id,
)


async def _detached(make: Callable[[], Awaitable[Any]]) -> Any:
    """Await ``make()`` outside the current task's Hatchet context (not as a child)."""
    context = contextvars.copy_context()
    for var in _PARENT_VARS:
        context.run(var.set, None)

    async def call() -> Any:
        return await make()

    return await asyncio.get_running_loop().create_task(call(), context=context)


class StepIn(BaseModel):
    i: int


class CallbackIn(BaseModel):
    step: ReturnValue[dict[str, Any]]
    reply_to: str


class NativeIn(BaseModel):
    i: int
    reply_to: str
    t_first: float | None = None


class BenchApp:
    """The benchmark's tasks on a Mageflow client.

    ``stats`` returns what the worker's counting connection saw; in the
    benchmark process (which only triggers runs) it is never called locally.
    """

    def __init__(
        self,
        hatchet: Hatchet,
        mf_redis: aioredis.Redis,
        rec: aioredis.Redis | None,
        prefix: str,
        stats: Any = None,
    ) -> None:
        self.mf = Mageflow(hatchet, mf_redis, config=MageflowConfig(key_prefix=prefix))
        mf = self.mf

        async def record(reply_to: str, t_end: float, t_first: float | None) -> None:
            assert rec is not None, "records are only written by the worker"
            await rec.rpush(reply_to, json.dumps({"t_end": t_end, "t_first": t_first}))

        @mf.task(name=STEP, input_validator=StepIn)
        async def step(msg: StepIn) -> dict[str, Any]:
            return {"i": msg.i, "t_first": time.monotonic()}

        @mf.task(name=CALLBACK, input_validator=CallbackIn)
        async def callback(msg: CallbackIn) -> None:
            now = time.monotonic()
            await record(msg.reply_to, now, msg.step.get("t_first"))

        @hatchet.task(name=NATIVE_SECOND, input_validator=NativeIn)
        async def native_second(inp: NativeIn, ctx: Context) -> dict[str, Any]:
            now = time.monotonic()
            await record(inp.reply_to, now, inp.t_first)
            return {"i": inp.i}

        @hatchet.task(name=NATIVE_FIRST, input_validator=NativeIn)
        async def native_first(inp: NativeIn, ctx: Context) -> dict[str, Any]:
            t_first = time.monotonic()
            await native_second.aio_run(
                NativeIn(i=inp.i, reply_to=inp.reply_to, t_first=t_first),
                wait_for_result=False,
            )
            return {"i": inp.i}

        @hatchet.task(name=NATIVE_FIRST_DETACHED, input_validator=NativeIn)
        async def native_first_detached(inp: NativeIn, ctx: Context) -> dict[str, Any]:
            # Same as native-first, but the second run is not a child of this one:
            # triggered the way MageFlow dispatches a callback (parent context cleared).
            t_first = time.monotonic()
            second = NativeIn(i=inp.i, reply_to=inp.reply_to, t_first=t_first)
            await _detached(lambda: native_second.aio_run(second, wait_for_result=False))
            return {"i": inp.i}

        @hatchet.task(name=STATS, input_validator=EmptyModel)
        async def bench_stats(inp: EmptyModel, ctx: Context) -> dict[str, Any]:
            return dict(stats()) if stats is not None else {}

        self.step = step
        self.callback = callback
        self.native_first = native_first
        self.native_second = native_second
        self.native_first_detached = native_first_detached
        self.stats = bench_stats
        self.workflows = [
            step,
            callback,
            native_first,
            native_second,
            native_first_detached,
            bench_stats,
        ]
