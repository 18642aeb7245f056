"""``TaskManager`` for Hatchet: dispatch, cancel and describe through hatchet-sdk."""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import Awaitable
from typing import Any, TypeVar

from hatchet_sdk import Hatchet
from hatchet_sdk.runnables import contextvars as hatchet_ctx
from hatchet_sdk.types.trigger import TriggerWorkflowOptions
from mageflow.manager import (
    CancelRequest,
    DescribeRequest,
    DispatchRequest,
    DispatchResult,
    TaskDescription,
)
from pydantic import BaseModel
from thirdmagic.errors import EngineError

__all__ = ["HatchetTaskManager"]

_T = TypeVar("_T")

# Hatchet turns a run triggered from inside a task into a child of that task
# (and copies the parent's metadata). A callback must not be a child: its
# lifecycle is its own, and cancelling the parent must not cancel it.
_PARENT_VARS: tuple[contextvars.ContextVar[Any], ...] = (
    hatchet_ctx.ctx_workflow_run_id,
    hatchet_ctx.ctx_step_run_id,
    hatchet_ctx.ctx_action_key,
    hatchet_ctx.ctx_additional_metadata,
    hatchet_ctx.ctx_worker_id,
)


async def _detached(make: Any) -> Any:
    context = contextvars.copy_context()
    for var in _PARENT_VARS:
        context.run(var.set, None)
    task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(make(), context=context)
    return await task


class HatchetTaskManager:
    """Runs signatures as Hatchet runs.

    The signature key and dispatch id travel in the run's additional metadata
    (``mageflow_signature_key``, ``mageflow_dispatch_id``), so a run can be
    found in the Hatchet dashboard by signature key.
    """

    def __init__(self, hatchet: Hatchet) -> None:
        self.hatchet = hatchet
        self._by_name: dict[str, TaskDescription] = {}
        self._by_object: dict[int, str] = {}

    def register(
        self, task: Any, name: str, input_model: type[BaseModel] | None, retries: int
    ) -> None:
        self._by_name[name] = TaskDescription(name=name, input_model=input_model, retries=retries)
        self._by_object[id(task)] = name

    def describe(self, request: DescribeRequest) -> TaskDescription | None:
        task = request.task
        if isinstance(task, str):
            return self._by_name.get(task)
        name = self._by_object.get(id(task))
        if name is not None:
            return self._by_name[name]
        task_name = getattr(task, "name", None)
        if isinstance(task_name, str):
            known = self._by_name.get(task_name)
            if known is not None:
                return known
            validator = getattr(task, "input_validator_type", None)
            model = (
                validator
                if isinstance(validator, type) and issubclass(validator, BaseModel)
                else None
            )
            return TaskDescription(name=task_name, input_model=model)
        return None

    async def _engine(self, what: str, call: Awaitable[_T]) -> _T:
        try:
            return await call
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise EngineError(f"hatchet {what} failed: {type(exc).__name__}: {exc}") from exc

    async def dispatch(self, request: DispatchRequest) -> DispatchResult:
        options = dict(request.options)
        metadata = {**(options.pop("additional_metadata", None) or {}), **request.metadata()}
        trigger = TriggerWorkflowOptions(
            additional_metadata=metadata,
            priority=options.pop("priority", None),
            **options,
        )
        admin = self.hatchet._client.admin

        async def send() -> Any:
            return await admin.aio_run_workflow(
                workflow_name=request.task_name,
                input=json.dumps(request.input),
                options=trigger,
            )

        ref = await self._engine(f"dispatch of {request.task_name!r}", _detached(send))
        return DispatchResult(run_id=ref.workflow_run_id)

    async def cancel(self, request: CancelRequest) -> None:
        await self._engine(
            f"cancel of run {request.run_id!r}", self.hatchet.runs.aio_cancel(request.run_id)
        )
