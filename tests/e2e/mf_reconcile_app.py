"""Tasks of the reconciler e2e tests (tests/e2e/test_reconcile.py), on a real Mageflow client.

Imported by the worker subprocess (``mf_reconcile_worker``) and by the tests.
Every body appends a JSON record to a Redis list, so a test sees what ran,
how often, and with which run metadata.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from typing import Any

from hatchet_sdk import ConcurrencyExpression, ConcurrencyLimitStrategy, Context, Hatchet
from mageflow import Mageflow, MageflowConfig, NonRetryable
from pydantic import BaseModel

RECORDS = "e2e:rc:records"


class Step(BaseModel):
    tag: str = ""
    n: int = 0


class NeedsCustomer(BaseModel):
    tag: str = ""
    customer_id: int


class Nap(BaseModel):
    tag: str = ""
    seconds: float = 60.0


def config(prefix: str) -> MageflowConfig:
    return MageflowConfig(
        key_prefix=prefix,
        lock_wait=timedelta(seconds=2),
        reconcile_after=timedelta(seconds=4),
        reconcile_max_resends=3,
    )


class ReconcileApp:
    def __init__(self, hatchet: Hatchet, redis_url: str, prefix: str) -> None:
        # lost_worker_attempts=0: the engine has exactly retries + 1 attempts,
        # so a worker killed on the last one leaves the run to the reconciler
        self.mf = Mageflow(hatchet, redis_url, config=config(prefix), lost_worker_attempts=0)
        mf = self.mf
        self.redis = mf.runtime.store.client

        async def record(task: str, **data: Any) -> None:
            entry = {"task": task, "at": time.time(), **data}
            await self.redis.rpush(RECORDS, json.dumps(entry, default=str))

        @mf.task(name="e2e-rc-step", input_validator=Step)
        @mf.with_ctx
        async def step(msg: Step, ctx: Context) -> dict[str, Any]:
            await record(
                "e2e-rc-step",
                tag=msg.tag,
                n=msg.n,
                meta=dict(ctx.additional_metadata or {}),
                priority=ctx.priority,
            )
            return {"n": msg.n}

        @mf.task(name="e2e-rc-fails", input_validator=Step)
        async def fails(msg: Step) -> None:
            await record("e2e-rc-fails", tag=msg.tag)
            raise NonRetryable("declined")

        @mf.task(name="e2e-rc-needs", input_validator=NeedsCustomer)
        async def needs(msg: NeedsCustomer) -> None:
            await record("e2e-rc-needs", tag=msg.tag)

        @mf.task(name="e2e-rc-note", input_validator=Step)
        async def note(msg: Step) -> None:
            await record("e2e-rc-note", tag=msg.tag)

        # one run per tag at a time: a second run of the same tag stays queued
        @mf.task(
            name="e2e-rc-nap",
            input_validator=Nap,
            execution_timeout=timedelta(minutes=3),
            concurrency=ConcurrencyExpression(
                expression="input.tag",
                max_runs=1,
                limit_strategy=ConcurrencyLimitStrategy.GROUP_ROUND_ROBIN,
            ),
        )
        async def nap(msg: Nap) -> dict[str, Any]:
            await record("e2e-rc-nap-start", tag=msg.tag)
            await asyncio.sleep(msg.seconds)
            await record("e2e-rc-nap-end", tag=msg.tag)
            return {"slept": msg.seconds}

        # one run per tag, and a run waits at most 3 s for its turn: a second
        # run of a busy tag times out in the engine before any worker sees it
        @mf.task(
            name="e2e-rc-late",
            input_validator=Nap,
            schedule_timeout=timedelta(seconds=3),
            execution_timeout=timedelta(seconds=30),
            concurrency=ConcurrencyExpression(
                expression="input.tag",
                max_runs=1,
                limit_strategy=ConcurrencyLimitStrategy.GROUP_ROUND_ROBIN,
            ),
        )
        async def late(msg: Nap) -> None:
            await record("e2e-rc-late", tag=msg.tag)
            await asyncio.sleep(msg.seconds)

        # served by the doomed worker too: a test kills it, then sends a run,
        # which the engine keeps assigning to the dead worker until it notices
        @mf.task(name="e2e-rc-resent", input_validator=Step, retries=30)
        async def resent(msg: Step) -> None:
            await record("e2e-rc-resent", tag=msg.tag)

        # no retries: the worker dies on the run's only (so last) attempt
        @mf.task(name="e2e-rc-doomed", input_validator=Nap, execution_timeout=timedelta(seconds=8))
        async def doomed(msg: Nap) -> None:
            await record("e2e-rc-doomed", tag=msg.tag)
            await asyncio.sleep(msg.seconds)

        # declared with plain Hatchet: its runs never report back to MageFlow
        @mf.hatchet.task(name="e2e-rc-plain", input_validator=Step)
        async def plain(msg: Step, ctx: Context) -> None:
            return None

        self.plain_workflow = mf.hatchet.workflow(name="e2e-rc-dag")

        self.tasks = [step, fails, needs, note, nap, late, resent, doomed]
        self.plain = plain

    async def records(self, task: str, tag: str) -> list[dict[str, Any]]:
        raw = await self.redis.lrange(RECORDS, 0, -1)
        out = [json.loads(r) for r in raw]
        return [r for r in out if r["task"] == task and r.get("tag") == tag]
