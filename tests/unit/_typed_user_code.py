"""User code written from the docs (older spellings, hand-over, lock_task): mypy --strict clean."""

from __future__ import annotations

from typing import Annotated, Any

from mageflow.models.message import ContextMessage, ReturnValue
from pydantic import BaseModel
from thirdmagic import ChainSignature, FlowSpec, SwarmConfig, TaskSignature


class SuccessMessage(BaseModel):
    task_result: Annotated[Any, ReturnValue()]
    other: ReturnValue[int]
    field_int: int


sig = TaskSignature(task_name="t", model_validators=ContextMessage)
model: type[BaseModel] | None = sig.model_validators
chain = ChainSignature(tasks=[sig, TaskSignature(task_name="u")])
body: str = FlowSpec.of(chain).to_json()
cfg = SwarmConfig(max_concurrency=2)


async def f() -> None:
    import mageflow

    held = await mageflow.lock_task("k", wait=3)
    await held.release()
    async with mageflow.lock_task("k") as s:
        print(s.key)
    root = await mageflow.submit(body)
    print(root.key)
