"""Tasks used by the chain and swarm end-to-end tests, on a real Mageflow client.

Imported by the worker subprocess (``mf_container_worker``, which serves one
group of these tasks) and by the tests (which sign, chain and swarm them).
Every body appends JSON records (``start``/``end``, with the signature key,
attempt number and a timestamp) to a Redis list per test tag, so a test sees
exactly what ran, when, with what input and how many times.

Two groups with the same bodies and different task names exist so that the
crash test's worker can be killed without touching the runs of other tests:
``main`` (``e2e-c-*``, served by the session worker) and ``crash``
(``e2e-ck-*``, served only by the crash test's own worker).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from datetime import timedelta
from typing import Any

from hatchet_sdk import Context, Hatchet
from mageflow import Mageflow, MageflowConfig, ReturnValue, TaskSignature
from pydantic import BaseModel, ConfigDict

RECORDS = "e2e:crec:"  # + tag
GROUPS = {"main": "e2e-c-", "crash": "e2e-ck-"}


class Start(BaseModel):
    """First step of a chain: returns x + add."""

    tag: str
    x: int = 0
    add: int = 1
    seconds: float = 0.0


class Step(BaseModel):
    """A later chain step: returns the previous step's result + add."""

    prev: ReturnValue[int]
    tag: str
    add: int = 1
    seconds: float = 0.0


class Total(BaseModel):
    """Receives a list (a nested swarm's result) and returns its sum."""

    values: ReturnValue[list[int]]
    tag: str


class Collected(BaseModel):
    """A success callback: records what it received."""

    results: ReturnValue[Any]
    tag: str
    label: str = ""


class Failed(BaseModel):
    """An error callback: records its whole input (the failed member's message)."""

    model_config = ConfigDict(extra="allow")

    tag: str
    label: str = ""


class Boom(BaseModel):
    """A step that always fails (after its retries)."""

    model_config = ConfigDict(extra="allow")

    tag: str
    prev: ReturnValue[Any] = None


class Work(BaseModel):
    """A swarm member: sleeps, then returns i * 10."""

    tag: str
    i: int = 0
    seconds: float = 0.2


class Payload(BaseModel):
    """Payloads by reference: receives ``data``, returns ``size`` characters (or ``data``)."""

    tag: str
    data: str = ""
    i: int = 0
    size: int = 0


class Measured(BaseModel):
    """A success callback that records the size and digest of what it received."""

    values: ReturnValue[Any]
    tag: str


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value).encode()).hexdigest()


def filler(i: int, size: int) -> str:
    """``size`` characters that depend on ``i``."""
    unit = f"{i}-"
    return (unit * (size // len(unit) + 1))[:size]


class ContainerApp:
    def __init__(self, hatchet: Hatchet, redis_url: str, prefix: str) -> None:
        self.mf = Mageflow(
            hatchet,
            redis_url,
            config=MageflowConfig(key_prefix=prefix, lock_wait=timedelta(seconds=5)),
        )
        self.redis = self.mf.runtime.store.client
        self.groups: dict[str, dict[str, Any]] = {
            group: self._define(name_prefix) for group, name_prefix in GROUPS.items()
        }
        self.tasks = self.groups["main"]

    async def record(self, tag: str, task: str, event: str, **data: Any) -> None:
        entry = {"task": task, "event": event, "at": time.time(), **data}
        await self.redis.rpush(RECORDS + tag, json.dumps(entry, default=str))

    def _define(self, p: str) -> dict[str, Any]:
        mf = self.mf
        record = self.record

        def who(ctx: Context, signature: TaskSignature | None) -> dict[str, Any]:
            return {"key": signature.key if signature else None, "attempt": ctx.attempt_number}

        @mf.task(name=f"{p}start", input_validator=Start, retries=1)
        @mf.with_ctx
        @mf.with_signature
        async def start(msg: Start, ctx: Context, signature: TaskSignature | None) -> int:
            await record(msg.tag, "start", "start", input=msg.model_dump(), **who(ctx, signature))
            await asyncio.sleep(msg.seconds)
            await record(msg.tag, "start", "end", **who(ctx, signature))
            return msg.x + msg.add

        @mf.task(name=f"{p}step", input_validator=Step, retries=1)
        @mf.with_ctx
        @mf.with_signature
        async def step(msg: Step, ctx: Context, signature: TaskSignature | None) -> int:
            await record(msg.tag, "step", "start", input=msg.model_dump(), **who(ctx, signature))
            await asyncio.sleep(msg.seconds)
            await record(msg.tag, "step", "end", **who(ctx, signature))
            return msg.prev + msg.add

        @mf.task(name=f"{p}total", input_validator=Total, retries=1)
        @mf.with_ctx
        @mf.with_signature
        async def total(msg: Total, ctx: Context, signature: TaskSignature | None) -> int:
            await record(msg.tag, "total", "start", input=msg.model_dump(), **who(ctx, signature))
            return sum(msg.values)

        @mf.task(name=f"{p}collect", input_validator=Collected, retries=2)
        @mf.with_ctx
        @mf.with_signature
        async def collect(msg: Collected, ctx: Context, signature: TaskSignature | None) -> None:
            await record(
                msg.tag,
                "collect",
                "start",
                label=msg.label,
                value=msg.results,
                **who(ctx, signature),
            )

        @mf.task(name=f"{p}on-error", input_validator=Failed, retries=2)
        @mf.with_ctx
        @mf.with_signature
        async def on_error(msg: Failed, ctx: Context, signature: TaskSignature | None) -> None:
            await record(
                msg.tag, "on-error", "start", input=msg.model_dump(), **who(ctx, signature)
            )

        @mf.task(name=f"{p}boom", input_validator=Boom, retries=1)
        @mf.with_ctx
        @mf.with_signature
        async def boom(msg: Boom, ctx: Context, signature: TaskSignature | None) -> None:
            await record(msg.tag, "boom", "start", **who(ctx, signature))
            raise RuntimeError(f"boom {msg.tag}")

        @mf.task(
            name=f"{p}work",
            input_validator=Work,
            retries=3,
            execution_timeout=timedelta(seconds=60),
        )
        @mf.with_ctx
        @mf.with_signature
        async def work(msg: Work, ctx: Context, signature: TaskSignature | None) -> int:
            await record(msg.tag, "work", "start", i=msg.i, **who(ctx, signature))
            await asyncio.sleep(msg.seconds)
            await record(msg.tag, "work", "end", i=msg.i, **who(ctx, signature))
            return msg.i * 10

        @mf.task(name=f"{p}payload", input_validator=Payload, retries=1)
        @mf.with_ctx
        @mf.with_signature
        async def payload(msg: Payload, ctx: Context, signature: TaskSignature | None) -> Any:
            await record(
                msg.tag,
                "payload",
                "start",
                i=msg.i,
                size=len(msg.data),
                digest=digest(msg.data),
                **who(ctx, signature),
            )
            return filler(msg.i, msg.size) if msg.size else {"echo": msg.data}

        @mf.task(name=f"{p}measure", input_validator=Measured, retries=1)
        @mf.with_ctx
        @mf.with_signature
        async def measure(msg: Measured, ctx: Context, signature: TaskSignature | None) -> None:
            values = msg.values
            await record(
                msg.tag,
                "measure",
                "start",
                kind=type(values).__name__,
                length=len(values) if isinstance(values, (list, str, dict)) else None,
                digest=digest(values),
                **who(ctx, signature),
            )

        return {
            "payload": payload,
            "measure": measure,
            "start": start,
            "step": step,
            "total": total,
            "collect": collect,
            "on_error": on_error,
            "boom": boom,
            "work": work,
        }

    def name(self, task: str, group: str = "main") -> str:
        return f"{GROUPS[group]}{task.replace('_', '-')}"

    async def records(
        self, tag: str, task: str | None = None, event: str | None = None
    ) -> list[dict[str, Any]]:
        raw = await self.redis.lrange(RECORDS + tag, 0, -1)
        out = [json.loads(r) for r in raw]
        return [
            r
            for r in out
            if (task is None or r["task"] == task) and (event is None or r["event"] == event)
        ]
