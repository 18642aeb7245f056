"""Tasks used by the end-to-end tests, defined on a real Mageflow client.

The same module is imported by the worker subprocess (which serves the tasks)
and by the tests (which sign and dispatch them). Every task body appends a
JSON record to a Redis list so tests can see exactly what ran, with what input,
and how many times.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from typing import Annotated, Any

from hatchet_sdk import Context, Hatchet
from hatchet_sdk.exceptions import NonRetryableException
from mageflow import Mageflow, MageflowConfig, ReturnValue, TaskSignature
from pydantic import BaseModel

RECORDS = "e2e:records"


class Order(BaseModel):
    order_id: int
    amount: float = 10.0
    tag: str = ""


class Receipt(BaseModel):
    receipt: ReturnValue[dict[str, Any]]
    tag: str


class ReceiptAnnotated(BaseModel):
    receipt: Annotated[dict[str, Any], ReturnValue()]
    tag: str


class ReceiptDefault(BaseModel):
    mageflow_results: dict[str, Any]
    tag: str


class OrderFailed(Order):
    reason: str = ""


class Flaky(BaseModel):
    fail_times: int = 0
    tag: str = ""


class SlowFlaky(BaseModel):
    fail_times: int = 1
    seconds: float = 2.0
    tag: str = ""


class Sleep(BaseModel):
    seconds: float = 30.0
    tag: str = ""


class Echo(BaseModel):
    tag: str = ""
    note: str = ""
    extra: int = 0


class App:
    def __init__(self, hatchet: Hatchet, redis_url: str, prefix: str) -> None:
        self.mf = Mageflow(
            hatchet,
            redis_url,
            config=MageflowConfig(key_prefix=prefix, lock_wait=timedelta(seconds=2)),
        )
        mf = self.mf
        self.redis = mf.runtime.store.client

        async def record(task: str, **data: Any) -> None:
            entry = {"task": task, "at": time.time(), **data}
            await self.redis.rpush(RECORDS, json.dumps(entry, default=str))

        @mf.task(name="e2e-charge", input_validator=Order)
        async def charge(msg: Order) -> dict[str, Any]:
            await record("e2e-charge", tag=msg.tag, input=msg.model_dump())
            return {"order_id": msg.order_id, "total": msg.amount * 2}

        @mf.task(name="e2e-receipt", input_validator=Receipt)
        async def receipt(msg: Receipt) -> None:
            await record("e2e-receipt", tag=msg.tag, value=msg.receipt)

        @mf.task(name="e2e-receipt-annotated", input_validator=ReceiptAnnotated)
        async def receipt_annotated(msg: ReceiptAnnotated) -> None:
            await record("e2e-receipt-annotated", tag=msg.tag, value=msg.receipt)

        @mf.task(name="e2e-receipt-default", input_validator=ReceiptDefault)
        async def receipt_default(msg: ReceiptDefault) -> None:
            await record("e2e-receipt-default", tag=msg.tag, value=msg.mageflow_results)

        @mf.task(name="e2e-on-error", input_validator=OrderFailed)
        async def on_error(msg: OrderFailed) -> None:
            await record("e2e-on-error", tag=msg.tag, input=msg.model_dump())

        @mf.task(name="e2e-flaky", input_validator=Flaky, retries=3)
        @mf.with_ctx
        async def flaky(msg: Flaky, ctx: Context) -> dict[str, Any]:
            await record("e2e-flaky", tag=msg.tag, attempt=ctx.attempt_number)
            if ctx.attempt_number <= msg.fail_times:
                raise RuntimeError(f"flaky failure {ctx.attempt_number}")
            return {"attempts": ctx.attempt_number}

        @mf.task(name="e2e-always-fail", input_validator=Order, retries=2)
        async def always_fail(msg: Order) -> None:
            await record("e2e-always-fail", tag=msg.tag)
            raise RuntimeError("always fails")

        @mf.task(name="e2e-non-retryable", input_validator=Order, retries=3)
        async def non_retryable(msg: Order) -> None:
            await record("e2e-non-retryable", tag=msg.tag)
            raise NonRetryableException("do not retry")

        @mf.task(
            name="e2e-timeout",
            input_validator=Order,
            retries=2,
            execution_timeout=timedelta(seconds=3),
        )
        async def times_out(msg: Order) -> None:
            await record("e2e-timeout", tag=msg.tag)
            await asyncio.sleep(30)

        @mf.task(name="e2e-sleep", input_validator=Sleep, execution_timeout=timedelta(minutes=2))
        async def sleeper(msg: Sleep) -> dict[str, Any]:
            await record("e2e-sleep-start", tag=msg.tag)
            await asyncio.sleep(msg.seconds)
            await record("e2e-sleep-end", tag=msg.tag)
            return {"slept": msg.seconds}

        @mf.task(name="e2e-echo", input_validator=Echo)
        async def echo(msg: Echo) -> dict[str, Any]:
            await record("e2e-echo", tag=msg.tag, input=msg.model_dump())
            return msg.model_dump()

        @mf.task(name="e2e-ctx", input_validator=Echo)
        @mf.with_ctx
        async def with_ctx(msg: Echo, ctx: Context) -> dict[str, Any]:
            await record("e2e-ctx", tag=msg.tag, ctx=type(ctx).__name__, run=ctx.workflow_run_id)
            return {"ok": True}

        @mf.task(name="e2e-sig", input_validator=Echo)
        @mf.with_signature
        async def with_sig(msg: Echo, signature: TaskSignature | None) -> dict[str, Any]:
            await record(
                "e2e-sig",
                tag=msg.tag,
                key=signature.key if signature else None,
                name=signature.task_name if signature else None,
            )
            return {"ok": True}

        @mf.task(name="e2e-stagger", input_validator=Echo, execution_timeout=timedelta(seconds=5))
        @mf.with_signature
        @mf.stagger_execution(timedelta(seconds=2))
        async def staggered(msg: Echo, signature: TaskSignature | None) -> dict[str, Any]:
            await record("e2e-stagger", tag=msg.tag, key=signature.key if signature else None)
            return {"ok": True}

        # per-task options above @mf.task work as well as below it
        @mf.with_ctx
        @mf.with_signature
        @mf.stagger_execution(timedelta(seconds=1))
        @mf.task(name="e2e-above", input_validator=Echo, execution_timeout=timedelta(seconds=5))
        async def above(msg: Echo, ctx: Context, signature: TaskSignature | None) -> dict[str, Any]:
            await record(
                "e2e-above",
                tag=msg.tag,
                ctx=type(ctx).__name__,
                key=signature.key if signature else None,
            )
            return {"ok": True}

        @mf.task(name="e2e-slow-flaky", input_validator=SlowFlaky, retries=1)
        @mf.with_ctx
        async def slow_flaky(msg: SlowFlaky, ctx: Context) -> dict[str, Any]:
            await record(
                "e2e-slow-flaky", tag=msg.tag, attempt=ctx.attempt_number, run=ctx.workflow_run_id
            )
            await asyncio.sleep(msg.seconds)
            if ctx.attempt_number <= msg.fail_times:
                raise RuntimeError(f"slow flaky failure {ctx.attempt_number}")
            return {"attempt": ctx.attempt_number}

        @mf.task(name="e2e-spawns-child", input_validator=Echo)
        async def spawns_child(msg: Echo) -> dict[str, Any]:
            # a plain Hatchet child run of another wrapped task, from inside a
            # signature run: it inherits the metadata but is not that signature
            child = await echo.aio_run(Echo(tag=msg.tag, note="child"))
            return {"child": child}

        @mf.durable_task(name="e2e-durable", input_validator=Echo)
        @mf.with_signature
        async def durable(msg: Echo, signature: TaskSignature | None) -> dict[str, Any]:
            await record("e2e-durable", tag=msg.tag, key=signature.key if signature else None)
            return {"durable": msg.tag}

        self.tasks = {
            "charge": charge,
            "receipt": receipt,
            "receipt_annotated": receipt_annotated,
            "receipt_default": receipt_default,
            "on_error": on_error,
            "flaky": flaky,
            "always_fail": always_fail,
            "non_retryable": non_retryable,
            "timeout": times_out,
            "sleep": sleeper,
            "echo": echo,
            "ctx": with_ctx,
            "sig": with_sig,
            "stagger": staggered,
            "above": above,
            "durable": durable,
            "slow_flaky": slow_flaky,
            "spawns_child": spawns_child,
        }

    async def records(
        self, task: str | None = None, tag: str | None = None
    ) -> list[dict[str, Any]]:
        raw = await self.redis.lrange(RECORDS, 0, -1)
        out = [json.loads(r) for r in raw]
        return [
            r
            for r in out
            if (task is None or r["task"] == task) and (tag is None or r.get("tag") == tag)
        ]
