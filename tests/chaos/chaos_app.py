"""Tasks of the fault-injection suite, served by ``chaos_worker`` and signed by the tests.

MageFlow's store is the chaos valkey (killed, paused, restarted); what the
bodies did is written to a second Redis that no fault touches (the observer),
so the checks after settling see every body run, keyed by signature key and
engine run id.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import redis.asyncio as aioredis
from hatchet_sdk import Context, Hatchet
from mageflow import MageflowConfig
from mageflow_hatchet import Mageflow
from pydantic import BaseModel, ConfigDict
from thirdmagic.signature import TaskSignature

__all__ = ["ChaosApp", "Loose", "Work"]


class Work(BaseModel):
    tag: str = ""
    fail_times: int = 0
    """Raise a retryable error on this many calls (counted by the observer)."""
    hang_calls: int = 0
    """Block on the first this many calls (the test kills the worker meanwhile)."""
    sleep: float = 0.0


class Loose(BaseModel):
    """Callbacks, chain steps and swarm members: whatever the message holds."""

    model_config = ConfigDict(extra="allow")
    tag: str = ""


class ChaosApp:
    def __init__(
        self,
        hatchet: Hatchet,
        redis_url: str,
        observer_url: str,
        prefix: str,
        lost_worker_attempts: int = 3,
        suffix: str = "",
    ) -> None:
        self.mf = Mageflow(
            hatchet,
            redis_url,
            config=MageflowConfig(key_prefix=prefix, lock_wait=timedelta(seconds=5)),
            lost_worker_attempts=lost_worker_attempts,
        )
        self.observer = aioredis.Redis.from_url(observer_url, decode_responses=True)
        obs = self.observer
        self.prefix = prefix
        self.suffix = suffix
        mf = self.mf

        async def ran(key: str, run_id: str) -> None:
            await obs.sadd(f"{prefix}ran:{key}", run_id)

        @mf.task(
            name=f"chaos-work{suffix}",
            input_validator=Work,
            retries=2,
            execution_timeout=timedelta(seconds=60),
        )
        @mf.with_ctx
        @mf.with_signature
        async def work(msg: Work, ctx: Context, signature: TaskSignature | None) -> dict[str, Any]:
            key = signature.key if signature else "direct"
            calls = await obs.incr(f"{prefix}calls:{key}")
            if calls <= msg.hang_calls:
                await obs.set(f"{prefix}hanging:{key}", calls)
                await asyncio.sleep(120)
            if msg.sleep:
                await asyncio.sleep(msg.sleep)
            failed = int(await obs.get(f"{prefix}fails:{key}") or 0)
            if failed < msg.fail_times:
                await obs.incr(f"{prefix}fails:{key}")
                raise RuntimeError(f"chaos failure {failed + 1} of {key}")
            await ran(key, ctx.workflow_run_id)
            return {"tag": msg.tag, "calls": calls}

        @mf.task(
            name=f"chaos-step{suffix}",
            input_validator=Loose,
            retries=4,
            execution_timeout=timedelta(seconds=60),
        )
        @mf.with_ctx
        @mf.with_signature
        async def step(msg: Loose, ctx: Context, signature: TaskSignature | None) -> dict[str, Any]:
            key = signature.key if signature else "direct"
            await asyncio.sleep(0.2)
            await ran(key, ctx.workflow_run_id)
            return {"tag": msg.tag, "step": key}

        self.tasks = {"work": work, "step": step}
