"""A plain hatchet-sdk worker for the engine smoke test.

Tasks are declared by ``declare(hatchet)`` so that the test process and the worker
process each bind them to their own client (a module-level ``Hatchet()`` would need
the engine's token at import time). Run: ``python tests/e2e/smoke_worker.py`` with
the engine's HATCHET_CLIENT_* variables set.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from hatchet_sdk import Context, Hatchet
from hatchet_sdk.runnables.workflow import BaseWorkflow, Standalone
from pydantic import BaseModel

WORKER_NAME = "mageflow-smoke-worker"


class AddInput(BaseModel):
    a: int
    b: int


class SleepInput(BaseModel):
    seconds: float


class SmokeFailure(RuntimeError):
    pass


@dataclass(frozen=True)
class SmokeTasks:
    add: Standalone[AddInput, dict[str, Any]]
    fail: Standalone[AddInput, dict[str, Any]]
    sleep: Standalone[SleepInput, dict[str, Any]]

    def all(self) -> list[BaseWorkflow[Any]]:
        return [self.add, self.fail, self.sleep]


def declare(hatchet: Hatchet) -> SmokeTasks:
    @hatchet.task(name="mageflow-smoke-add", input_validator=AddInput)
    async def add(input: AddInput, ctx: Context) -> dict[str, Any]:
        return {
            "sum": input.a + input.b,
            "metadata": dict(ctx.additional_metadata or {}),
            "retry_count": ctx.retry_count,
        }

    @hatchet.task(name="mageflow-smoke-fail", input_validator=AddInput, retries=0)
    async def fail(input: AddInput, ctx: Context) -> dict[str, Any]:
        raise SmokeFailure(f"smoke failure for {input.a}+{input.b}")

    @hatchet.task(
        name="mageflow-smoke-sleep",
        input_validator=SleepInput,
        execution_timeout=timedelta(minutes=5),
    )
    async def sleep(input: SleepInput, ctx: Context) -> dict[str, Any]:
        await asyncio.sleep(input.seconds)
        return {"slept": input.seconds}

    return SmokeTasks(add=add, fail=fail, sleep=sleep)


def main() -> None:
    hatchet = Hatchet()
    tasks = declare(hatchet)
    worker = hatchet.worker(WORKER_NAME, slots=5, workflows=tasks.all())
    worker.start()


if __name__ == "__main__":
    main()
