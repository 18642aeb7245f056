"""The Mageflow client: a Hatchet client with signatures, callbacks and lifecycle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, Protocol, TypeVar, overload

import mageflow
import redis.asyncio as aioredis
from hatchet_sdk import EmptyModel, Hatchet, Worker
from hatchet_sdk.runnables.types import ValidTaskReturnType
from hatchet_sdk.runnables.workflow import BaseWorkflow, Standalone
from mageflow import MageflowConfig, MageflowRuntime, MageflowValidationError
from mageflow.engine import DescribeRequest
from pydantic import BaseModel
from thirdmagic.params import AcceptParams
from thirdmagic.signature import (
    ChainSignature,
    Signature,
    SwarmConfig,
    SwarmSignature,
    TaskSignature,
)

from mageflow_hatchet._payloads import lenient
from mageflow_hatchet._wrap import flags_of, make_wrapper, share_flags
from mageflow_hatchet.manager import HatchetTaskManager

__all__ = ["HatchetMageflow", "Mageflow", "TaskDecorator"]

_F = TypeVar("_F", bound=Callable[..., Any])
_R = TypeVar("_R", bound=ValidTaskReturnType)
_In = TypeVar("_In", bound=BaseModel)

log = logging.getLogger("mageflow.hatchet")


class TaskDecorator(Protocol[_In]):
    """What ``mf.task(...)`` returns: turns a function into Hatchet's ``Standalone`` task.

    The function receives what ``param_config`` says (the message, the context,
    or both), so its parameters are not constrained here; its return type
    becomes the task's output type. A return value Hatchet cannot take as
    output (an int, a list…) is wrapped as ``{"mageflow_results": value}``.
    """

    @overload
    def __call__(self, fn: Callable[..., Coroutine[Any, Any, _R]]) -> Standalone[_In, _R]: ...

    @overload
    def __call__(
        self, fn: Callable[..., Coroutine[Any, Any, Any]]
    ) -> Standalone[_In, dict[str, Any]]: ...

    @overload
    def __call__(self, fn: Callable[..., _R]) -> Standalone[_In, _R]: ...

    @overload
    def __call__(self, fn: Callable[..., Any]) -> Standalone[_In, dict[str, Any]]: ...


class HatchetMageflow(Hatchet):
    """A ``Hatchet`` client (a real subclass) with MageFlow's features.

    It shares the wrapped client's connection and configuration, so it can be
    passed wherever hatchet-sdk or your code expects a ``Hatchet``; ``task``,
    ``durable_task`` and ``worker`` keep Hatchet's behaviour and add the
    signature lifecycle.
    """

    def __init__(
        self,
        hatchet_client: Hatchet,
        redis_client: aioredis.Redis | str | None = None,
        param_config: AcceptParams = AcceptParams.NO_CTX,
        config: MageflowConfig | None = None,
        lost_worker_attempts: int = 3,
    ) -> None:
        # No Hatchet.__init__: that would open a second connection. The
        # wrapped client's state is all a Hatchet is, so share it.
        vars(self).update(vars(hatchet_client))
        self.hatchet = hatchet_client
        if lost_worker_attempts < 0:
            raise MageflowValidationError(
                f"lost_worker_attempts: expected an int >= 0, got {lost_worker_attempts!r}"
            )
        # Hatchet spends an attempt on a worker it lost; MageFlow does not.
        # The engine gets this many attempts more than `retries`, so a lost
        # worker rarely leaves a run with no attempt; MageFlow's own count
        # still ends the run after exactly `retries` application failures.
        self.lost_worker_attempts = lost_worker_attempts
        self.param_config = AcceptParams(param_config)
        self.task_manager = HatchetTaskManager(hatchet_client)
        self.runtime: MageflowRuntime = mageflow.configure(redis_client, self.task_manager, config)

    # -- task registration ---------------------------------------------------

    def _register(self, decorator: Callable[..., Any], options: dict[str, Any]) -> Any:
        model = options.get("input_validator")
        if model is not None and not (isinstance(model, type) and issubclass(model, BaseModel)):
            model = None

        retries = int(options.get("retries", 0))

        def wrap(fn: Callable[..., Any]) -> Any:
            registered: list[Any] = []
            wrapper = make_wrapper(
                fn,
                runtime=lambda: self.runtime,
                task_name=lambda: registered[0].name,
                model=model,
                param_config=self.param_config,
                execution_timeout=options.get("execution_timeout"),
                namespace=self.hatchet.namespace or "",
                retries=retries,
            )
            hatchet_options = {**options, "retries": retries + self.lost_worker_attempts}
            if model is not None:
                hatchet_options["input_validator"] = lenient(model)
            task = decorator(**hatchet_options)(wrapper)
            if self.task_manager.describe(DescribeRequest(task=task.name)) is not None:
                raise mageflow.MageflowValidationError(
                    f"name: a task named {task.name!r} is already registered on this client; "
                    "a second registration would silently replace the first",
                    field="name",
                )
            registered.append(task)
            share_flags(task, fn)
            self.task_manager.register(task, task.name, model, retries)
            return task

        return wrap

    @overload  # type: ignore[override]
    def task(
        self, *, input_validator: None = None, **options: Any
    ) -> TaskDecorator[EmptyModel]: ...

    @overload
    def task(self, *, input_validator: type[_In], **options: Any) -> TaskDecorator[_In]: ...

    def task(self, **options: Any) -> Any:
        """Like ``Hatchet.task``; a run started from a signature drives its lifecycle.

        Takes Hatchet's keyword options and returns Hatchet's ``Standalone``
        task. A direct Hatchet run of the same task behaves as if MageFlow
        were not there.
        """
        return self._register(self.hatchet.task, options)

    @overload  # type: ignore[override]
    def durable_task(
        self, *, input_validator: None = None, **options: Any
    ) -> TaskDecorator[EmptyModel]: ...

    @overload
    def durable_task(self, *, input_validator: type[_In], **options: Any) -> TaskDecorator[_In]: ...

    def durable_task(self, **options: Any) -> Any:
        """Like ``Hatchet.durable_task``, with the same MageFlow behaviour as :meth:`task`."""
        return self._register(self.hatchet.durable_task, options)

    # -- workers -----------------------------------------------------------------

    def worker(
        self,
        name: str,
        slots: int | None = None,
        durable_slots: int | None = None,
        labels: dict[str, str | int] | None = None,
        workflows: Sequence[BaseWorkflow[Any]] | None = None,
        lifespan: Callable[[], AsyncGenerator[Any, Any]] | None = None,
        *,
        recover_every: timedelta | None = timedelta(seconds=30),
        recover_after: timedelta = timedelta(minutes=5),
    ) -> Worker:
        """Like ``Hatchet.worker``; the worker also runs the reconciler.

        Every ``recover_every`` it calls ``runtime.reconcile(recover_after)``:
        claims and begun runs not heard of for ``recover_after`` are settled by
        what Hatchet says about their runs (docs/lifecycle.md), and dispatches
        that never reached the engine are sent again. ``None`` turns it off.
        """
        user_lifespan = asynccontextmanager(lifespan) if lifespan is not None else None
        runtime = self.runtime

        # set as well as cancel(): a cancellation that lands as a Redis command
        # completes can be swallowed on Python 3.11 (asyncio.wait_for in redis-py)
        stopped = asyncio.Event()

        async def recover_loop(every: timedelta) -> None:
            while not stopped.is_set():
                await asyncio.sleep(every.total_seconds())
                if stopped.is_set():
                    return
                try:
                    await runtime.reconcile(recover_after)
                except Exception:
                    log.exception("mageflow: a reconciler sweep failed")

        async def mageflow_lifespan() -> AsyncGenerator[Any, None]:
            loop_task = asyncio.create_task(recover_loop(recover_every)) if recover_every else None
            try:
                if user_lifespan is None:
                    yield None
                else:
                    async with user_lifespan() as value:
                        yield value
            finally:
                if loop_task is not None:
                    stopped.set()
                    loop_task.cancel()
                # run ids of the last dispatches no BEGIN/FINISH took: written
                # now rather than left to the reconciler
                try:
                    await runtime.flush()
                except Exception:
                    log.warning("mageflow: could not record the last run ids", exc_info=True)

        return self.hatchet.worker(
            name,
            slots=slots,
            durable_slots=durable_slots,
            labels=labels,
            workflows=list(workflows) if workflows is not None else None,
            lifespan=mageflow_lifespan,
        )

    # -- per-task options --------------------------------------------------------

    def with_ctx(self, fn: _F) -> _F:
        """Pass the Hatchet ``Context`` to this task whatever ``param_config`` says."""
        flags_of(fn).with_ctx = True
        return fn

    def with_signature(self, fn: _F) -> _F:
        """Pass the task's own ``TaskSignature`` as keyword ``signature``."""
        flags_of(fn).with_signature = True
        return fn

    def stagger_execution(self, wait_delta: timedelta) -> Callable[[_F], _F]:
        """Delay the body by a uniform random 0..wait_delta, extending the timeout to match."""
        if wait_delta.total_seconds() < 0:
            raise mageflow.MageflowValidationError(
                "wait_delta: expected a non-negative duration", field="wait_delta"
            )

        def mark(fn: _F) -> _F:
            flags_of(fn).stagger = wait_delta
            return fn

        return mark

    # -- signatures ------------------------------------------------------------

    async def asign(self, task: Any, **options: Any) -> TaskSignature:
        return await self.runtime.sign(task, **options)

    sign = asign

    async def asign_many(
        self, task: Any, items: Sequence[Any], **options: Any
    ) -> list[TaskSignature]:
        """One stored signature of ``task`` per item of kwargs (see ``mageflow.asign_many``)."""
        return await self.runtime.sign_many(task, items, **options)

    async def achain(
        self,
        tasks: Any,
        name: str | None = None,
        success: Any = None,
        error: Any = None,
        **kwargs: Any,
    ) -> ChainSignature:
        return await self.runtime.chain(tasks, name, success, error, **kwargs)

    chain = achain

    async def aswarm(
        self,
        tasks: Any = None,
        success_callbacks: Any = None,
        error_callbacks: Any = None,
        config: SwarmConfig | None = None,
        is_swarm_closed: bool = False,
        **kwargs: Any,
    ) -> SwarmSignature:
        return await self.runtime.swarm(
            tasks, success_callbacks, error_callbacks, config, is_swarm_closed, **kwargs
        )

    swarm = aswarm

    async def submit(self, spec: Any) -> Signature:
        """Store a flow built with thirdmagic alone (see ``mageflow.submit``)."""
        return await self.runtime.submit(spec)

    async def load_signature(self, key: str) -> Signature | None:
        return await self.runtime.load(key)


Mageflow = HatchetMageflow
