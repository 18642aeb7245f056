"""The Mageflow client: a Hatchet client with signatures, callbacks and lifecycle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, TypeVar

import mageflow
import redis.asyncio as aioredis
from hatchet_sdk import Hatchet
from mageflow._runtime import MageflowRuntime
from mageflow.config import MageflowConfig
from mageflow.manager import DescribeRequest
from pydantic import BaseModel
from thirdmagic.params import AcceptParams
from thirdmagic.signature import ChainSignature, SwarmConfig, SwarmSignature, TaskSignature

from mageflow_hatchet._wrap import flags_of, make_wrapper, share_flags
from mageflow_hatchet.manager import HatchetTaskManager

__all__ = ["HatchetMageflow", "Mageflow"]

_F = TypeVar("_F", bound=Callable[..., Any])

log = logging.getLogger("mageflow.hatchet")


class HatchetMageflow:
    """Acts exactly like the wrapped ``Hatchet`` client, plus MageFlow's features.

    Anything not defined here is delegated to the Hatchet client.
    """

    def __init__(
        self,
        hatchet_client: Hatchet,
        redis_client: aioredis.Redis | str | None = None,
        param_config: AcceptParams = AcceptParams.NO_CTX,
        config: MageflowConfig | None = None,
    ) -> None:
        self.hatchet = hatchet_client
        self.param_config = AcceptParams(param_config)
        self.task_manager = HatchetTaskManager(hatchet_client)
        self.runtime: MageflowRuntime = mageflow.configure(redis_client, self.task_manager, config)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.hatchet, name)

    # -- task registration ---------------------------------------------------

    def _register(
        self, decorator: Callable[..., Any], options: dict[str, Any]
    ) -> Callable[[Callable[..., Any]], Any]:
        model = options.get("input_validator")
        if model is not None and not (isinstance(model, type) and issubclass(model, BaseModel)):
            model = None

        def wrap(fn: Callable[..., Any]) -> Any:
            registered: list[Any] = []
            wrapper = make_wrapper(
                fn,
                runtime=lambda: self.runtime,
                task_name=lambda: registered[0].name,
                model=model,
                param_config=self.param_config,
                execution_timeout=options.get("execution_timeout"),
                namespace=self.hatchet._client.config.namespace or "",
            )
            task = decorator(**options)(wrapper)
            if self.task_manager.describe(DescribeRequest(task=task.name)) is not None:
                raise mageflow.MageflowValidationError(
                    f"name: a task named {task.name!r} is already registered on this client; "
                    "a second registration would silently replace the first",
                    field="name",
                )
            registered.append(task)
            share_flags(task, fn)
            self.task_manager.register(task, task.name, model, int(options.get("retries", 0)))
            return task

        return wrap

    def task(self, **options: Any) -> Callable[[Callable[..., Any]], Any]:
        """Like ``Hatchet.task``; a run started from a signature drives its lifecycle.

        A direct Hatchet run of the same task behaves as if MageFlow were not there.
        """
        return self._register(self.hatchet.task, options)

    def durable_task(self, **options: Any) -> Callable[[Callable[..., Any]], Any]:
        """Like ``Hatchet.durable_task``, with the same MageFlow behaviour as :meth:`task`."""
        return self._register(self.hatchet.durable_task, options)

    # -- workers -----------------------------------------------------------------

    def worker(
        self,
        *args: Any,
        lifespan: Callable[[], AsyncGenerator[Any, None]] | None = None,
        recover_every: timedelta | None = timedelta(seconds=30),
        recover_after: timedelta = timedelta(minutes=5),
        **kwargs: Any,
    ) -> Any:
        """Like ``Hatchet.worker``; the worker also re-sends lost dispatches.

        Every ``recover_every`` it calls ``runtime.recover(recover_after)``:
        dispatches claimed in Redis whose run never reached the engine (a crash
        between the two, an engine error) are sent again. ``None`` turns it off.
        """
        user_lifespan = asynccontextmanager(lifespan) if lifespan is not None else None
        runtime = self.runtime

        async def recover_loop(every: timedelta) -> None:
            while True:
                await asyncio.sleep(every.total_seconds())
                try:
                    await runtime.recover(recover_after)
                except Exception:
                    log.exception("mageflow: recovering lost dispatches failed")

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
                    loop_task.cancel()

        kwargs["lifespan"] = mageflow_lifespan
        return self.hatchet.worker(*args, **kwargs)

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

    async def submit(self, spec: Any) -> Any:
        """Store a flow built with thirdmagic alone (see ``mageflow.submit``)."""
        return await self.runtime.submit(spec)

    async def load_signature(self, key: str) -> Any:
        return await self.runtime.load(key)


Mageflow = HatchetMageflow
