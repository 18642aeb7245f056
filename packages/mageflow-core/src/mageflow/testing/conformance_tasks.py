"""The tasks the conformance kit runs: an adapter registers each one on its engine.

They are plain async functions taking one pydantic message, so any engine can
host them. They record what happened in a Redis list under the runtime's key
prefix (``<prefix>mfconf:<probe>``), which the kit reads from the test
process: a worker may live in another process. Registering them (Hatchet)::

    for spec in CONFORMANCE_TASKS:
        mf.task(name=spec.name, input_validator=spec.input_model, retries=spec.retries)(spec.fn)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict
from thirdmagic.message import ReturnValue

from mageflow._api import get_runtime
from mageflow.engine import NonRetryable

__all__ = ["CONFORMANCE_TASKS", "ConformanceTask", "probe_key"]


def probe_key(prefix: str, probe: str) -> str:
    """The Redis list the tasks of one test record into."""
    return f"{prefix}mfconf:{probe}"


async def _record(probe: str, event: str) -> None:
    runtime = get_runtime()
    await runtime.store.client.rpush(probe_key(runtime.config.key_prefix, probe), event)


async def _count(probe: str, name: str, delta: int) -> int:
    runtime = get_runtime()
    return int(
        await runtime.store.client.incrby(
            f"{probe_key(runtime.config.key_prefix, probe)}:{name}", delta
        )
    )


class Probed(BaseModel):
    probe: str


class DoubleIn(Probed):
    n: ReturnValue[int]


class RecordIn(Probed):
    result: ReturnValue[int]
    tag: str = "ok"


class NoteIn(Probed):
    # error callbacks receive the failed task's message plus their own kwargs,
    # swarm callbacks the members' results: accept whatever comes
    model_config = ConfigDict(extra="allow")
    tag: str = "note"


class FlakyIn(Probed):
    n: int = 0
    fail_times: int = 0


class SlowIn(Probed):
    n: int = 0
    seconds: float = 0.2


async def double(msg: DoubleIn) -> int:
    await _record(msg.probe, f"double:{msg.n}")
    return msg.n * 2


async def record(msg: RecordIn) -> None:
    await _record(msg.probe, f"{msg.tag}:{msg.result}")


async def note(msg: NoteIn) -> None:
    await _record(msg.probe, msg.tag)


async def flaky(msg: FlakyIn) -> int:
    attempt = await _count(msg.probe, "attempts", 1)
    await _record(msg.probe, f"flaky-attempt:{attempt}")
    if attempt <= msg.fail_times:
        raise RuntimeError(f"flaky: attempt {attempt} fails on purpose")
    return msg.n


async def final(msg: FlakyIn) -> int:
    attempt = await _count(msg.probe, "attempts", 1)
    await _record(msg.probe, f"final-attempt:{attempt}")
    raise NonRetryable("final: fails without retry on purpose")


async def slow(msg: SlowIn) -> int:
    running = await _count(msg.probe, "running", 1)
    await _record(msg.probe, f"slow-start:{msg.n}:{running}")
    try:
        await asyncio.sleep(msg.seconds)
    finally:
        await _count(msg.probe, "running", -1)
    await _record(msg.probe, f"slow-end:{msg.n}")
    return msg.n


@dataclass(frozen=True, kw_only=True)
class ConformanceTask:
    """One task to register: its name, body, input model and retry count."""

    name: str
    fn: Callable[[Any], Awaitable[Any]]
    input_model: type[BaseModel]
    retries: int = 0


CONFORMANCE_TASKS: tuple[ConformanceTask, ...] = (
    ConformanceTask(name="mfconf-double", fn=double, input_model=DoubleIn),
    ConformanceTask(name="mfconf-record", fn=record, input_model=RecordIn),
    ConformanceTask(name="mfconf-note", fn=note, input_model=NoteIn),
    ConformanceTask(name="mfconf-flaky", fn=flaky, input_model=FlakyIn, retries=2),
    ConformanceTask(name="mfconf-final", fn=final, input_model=FlakyIn, retries=3),
    ConformanceTask(name="mfconf-slow", fn=slow, input_model=SlowIn),
)
