"""The engine seam: what MageFlow core needs from a task engine.

An adapter package (``mageflow-hatchet``, or a future one) implements
:class:`TaskManager`; core never imports an engine SDK. Each method takes one
input model so fields can be added without breaking adapters.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CancelRequest",
    "DescribeRequest",
    "DispatchRequest",
    "DispatchResult",
    "TaskDescription",
    "TaskManager",
]

SIGNATURE_KEY_META = "mageflow_signature_key"
DISPATCH_ID_META = "mageflow_dispatch_id"
TASK_META = "mageflow_task"


class DispatchRequest(BaseModel):
    """Start one run of ``task_name`` with ``input``.

    ``signature_key`` and ``dispatch_id`` must reach the worker unchanged with
    the run (Hatchet: additional metadata); the worker hands them back to core
    when the run starts, which is how duplicates and stale runs are recognised.
    """

    task_name: str
    input: dict[str, Any]
    signature_key: str
    dispatch_id: str
    options: dict[str, Any] = Field(default_factory=dict)

    def metadata(self) -> dict[str, str]:
        # The task name is there because engines copy a run's metadata into runs
        # it starts: a worker must tell its own signature run from a child's.
        return {
            SIGNATURE_KEY_META: self.signature_key,
            DISPATCH_ID_META: self.dispatch_id,
            TASK_META: self.task_name,
        }


class DispatchResult(BaseModel):
    run_id: str | None = None


class CancelRequest(BaseModel):
    """Cancel the run ``run_id`` (it belongs to signature ``signature_key``)."""

    run_id: str
    signature_key: str | None = None


class DescribeRequest(BaseModel):
    """Describe a task given by name or by the engine's task object."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    task: Any


class TaskDescription(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    input_model: type[BaseModel] | None = None
    retries: int = 0


@runtime_checkable
class TaskManager(Protocol):
    """Contract every engine adapter fulfils.

    ``dispatch``
        Enqueue one run and return without waiting for it. It must not run the
        task body inline. It may be called again with the same ``dispatch_id``
        after a crash; the duplicate run is harmless because core skips a run
        whose dispatch was already claimed, so the adapter need not deduplicate.
        Raises ``EngineError`` when the engine refuses or cannot be reached.
    ``cancel``
        Stop a run that may be executing; a run that already ended is a no-op.
        Raises ``EngineError`` when the engine cannot be reached.
    ``describe``
        Name, input model and retry count of a task this process knows, or
        None when it does not know the task. Local and fast: no I/O.
    """

    async def dispatch(self, request: DispatchRequest) -> DispatchResult: ...

    async def cancel(self, request: CancelRequest) -> None: ...

    def describe(self, request: DescribeRequest) -> TaskDescription | None: ...
