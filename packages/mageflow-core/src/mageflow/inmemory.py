"""An in-process TaskManager that really runs tasks: for fast tests and demos.

Runs execute as asyncio tasks of the current event loop through the same
worker path an engine adapter uses (``MageflowRuntime.execute_run``), with
retries, so signatures, callbacks and lifecycle behave as on a real engine.
It is no substitute for an engine in production: runs die with the process.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from thirdmagic.errors import ConfigurationError, EngineError

from mageflow.engine import (
    CancelRequest,
    DescribeRequest,
    DispatchRequest,
    DispatchResult,
    NonRetryable,
    RunOutcome,
    RunRequest,
    TaskDescription,
    TaskManager,
)

if TYPE_CHECKING:
    from thirdmagic.signature import Signature

    from mageflow._runtime import MageflowRuntime

__all__ = ["InMemoryTask", "InMemoryTaskManager", "RunRecord"]

log = logging.getLogger("mageflow.inmemory")

TaskFn = Callable[..., Awaitable[Any]]


NonRetryableError = NonRetryable
"""Legacy name of :class:`mageflow.engine.NonRetryable`, which works on every engine."""


@dataclass
class InMemoryTask:
    name: str
    fn: TaskFn
    input_validator: type[BaseModel] | None = None
    retries: int = 0
    non_retryable: tuple[type[BaseException], ...] = ()
    wants_signature: bool = False

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return await self.fn(*args, **kwargs)


@dataclass
class RunRecord:
    run_id: str
    task_name: str
    input: dict[str, Any]
    signature_key: str
    dispatch_id: str
    attempts: int = 0
    status: str = "queued"
    result: Any = None
    error: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


class InMemoryTaskManager(TaskManager):
    """TaskManager executing registered async functions in this process."""

    def __init__(self) -> None:
        self._tasks: dict[str, InMemoryTask] = {}
        self._running: dict[str, asyncio.Task[None]] = {}
        self._runtime: MageflowRuntime | None = None
        self.runs: dict[str, RunRecord] = {}
        self.body_calls: Counter[str] = Counter()

    def bind(self, runtime: MageflowRuntime) -> None:
        self._runtime = runtime

    # -- registration ---------------------------------------------------------

    def task(
        self,
        name: str | None = None,
        *,
        input_validator: type[BaseModel] | None = None,
        retries: int = 0,
        non_retryable: tuple[type[BaseException], ...] = (),
    ) -> Callable[[TaskFn], InMemoryTask]:
        def register(fn: TaskFn) -> InMemoryTask:
            task_name = name or fn.__name__
            model = input_validator
            try:  # resolve string annotations (`from __future__ import annotations`)
                params = list(inspect.signature(fn, eval_str=True).parameters.values())
            except (NameError, SyntaxError, TypeError):
                params = list(inspect.signature(fn).parameters.values())
            if model is None and params:
                annotation = params[0].annotation
                if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                    model = annotation
            wants_sig = any(p.name == "signature" for p in params)
            task = InMemoryTask(task_name, fn, model, retries, non_retryable, wants_sig)
            self._tasks[task_name] = task
            return task

        return register

    def describe(self, request: DescribeRequest) -> TaskDescription | None:
        task = request.task
        found: InMemoryTask | None = None
        if isinstance(task, InMemoryTask):
            found = task
        elif isinstance(task, str):
            found = self._tasks.get(task)
        else:
            found = next((t for t in self._tasks.values() if t.fn is task), None)
        if found is None:
            return None
        return TaskDescription(
            name=found.name, input_model=found.input_validator, retries=found.retries
        )

    # -- TaskManager ------------------------------------------------------------

    async def dispatch(self, request: DispatchRequest) -> DispatchResult:
        task = self._tasks.get(request.task_name)
        if task is None:
            raise EngineError(f"task {request.task_name!r} is not registered in memory")
        run_id = f"run-{uuid.uuid4().hex[:12]}"
        record = RunRecord(
            run_id,
            request.task_name,
            request.input,
            request.signature_key,
            request.dispatch_id,
            options=request.options,
        )
        self.runs[run_id] = record
        self._running[run_id] = asyncio.create_task(self._execute(task, record))
        return DispatchResult(run_id=run_id)

    async def cancel(self, request: CancelRequest) -> None:
        running = self._running.get(request.run_id)
        if running is not None and not running.done():
            running.cancel()

    # -- execution ----------------------------------------------------------------

    def _runtime_or_fail(self) -> MageflowRuntime:
        if self._runtime is None:
            raise ConfigurationError("InMemoryTaskManager is not bound to a runtime")
        return self._runtime

    async def _execute(self, task: InMemoryTask, record: RunRecord) -> None:
        runtime = self._runtime_or_fail()
        attempts = task.retries + 1

        async def body(arg: Any, sig: Signature) -> Any:
            return await self._call_body(task, arg, sig)

        try:
            for attempt in range(1, attempts + 1):
                record.attempts = attempt
                record.status = "running"

                def final(exc: BaseException, attempt: int = attempt) -> bool:
                    return attempt >= attempts or isinstance(
                        exc, (NonRetryable, *task.non_retryable)
                    )

                request = RunRequest(
                    signature_key=record.signature_key,
                    dispatch_id=record.dispatch_id,
                    run_id=record.run_id,
                    payload=record.input,
                    body=body,
                    is_final_failure=final,
                    model=task.input_validator,
                    task_name=task.name,
                )
                try:
                    outcome = await self._deliver(runtime, request)
                except asyncio.CancelledError:
                    record.status = "cancelled"
                    return
                except Exception as exc:
                    record.error = f"{type(exc).__name__}: {exc}"
                    if final(exc):
                        record.status = "failed"
                        return
                    continue
                record.status = "succeeded" if outcome.ran else f"skipped:{outcome.reason}"
                record.result = outcome.result
                return
        finally:
            self._running.pop(record.run_id, None)

    async def _call_body(self, task: InMemoryTask, arg: Any, sig: Signature) -> Any:
        # one call of a task body; mageflow.testing.faults overrides it
        self.body_calls[task.name] += 1
        if task.wants_signature:
            return await task.fn(arg, signature=sig)
        return await task.fn(arg)

    async def _deliver(self, runtime: MageflowRuntime, request: RunRequest) -> RunOutcome:
        # one delivered attempt; mageflow.testing.faults overrides it
        return await runtime.execute_run(request)

    async def run_direct(self, task: InMemoryTask | str, input_data: Any) -> Any:
        """Call a task body directly, outside any signature (like a plain engine run)."""
        found = self._tasks[task] if isinstance(task, str) else task
        arg = input_data
        if found.input_validator is not None and not isinstance(input_data, BaseModel):
            arg = found.input_validator.model_validate(input_data)
        self.body_calls[found.name] += 1
        return await found.fn(arg)

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until no run is executing (runs may start more runs)."""
        async with asyncio.timeout(timeout):
            while self._running:
                await asyncio.gather(*list(self._running.values()), return_exceptions=True)
