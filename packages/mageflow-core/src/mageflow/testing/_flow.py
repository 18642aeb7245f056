"""A runtime on the in-memory engine for one test."""

from __future__ import annotations

from contextlib import ExitStack
from types import TracebackType

import redis.asyncio as aioredis

from mageflow._api import create_runtime
from mageflow._runtime import MageflowRuntime
from mageflow.config import MageflowConfig
from mageflow.inmemory import InMemoryTaskManager

__all__ = ["InMemoryFlow"]


class InMemoryFlow:
    """The in-memory engine, a runtime on it, activated while the flow is entered.

    ::

        async with InMemoryFlow(redis_url, config=MageflowConfig(key_prefix="t:")) as flow:
            @flow.manager.task("double")
            async def double(msg: Num) -> int: ...

            sig = await mageflow.asign("double")
            ...
            await flow.wait_idle()

    On exit it waits for running tasks and deletes every key under the prefix,
    so use a fresh ``key_prefix`` per test. ``manager`` may be any
    ``InMemoryTaskManager`` (a ``FaultyTaskManager`` to inject faults).
    """

    def __init__(
        self,
        redis: aioredis.Redis | str | None = None,
        *,
        config: MageflowConfig | None = None,
        manager: InMemoryTaskManager | None = None,
    ) -> None:
        self.manager = manager if manager is not None else InMemoryTaskManager()
        self.runtime: MageflowRuntime = create_runtime(redis, self.manager, config)
        self._scope = ExitStack()

    async def __aenter__(self) -> InMemoryFlow:
        await self.runtime.store.prepare()
        self._scope.enter_context(self.runtime.activate())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.manager.wait_idle(timeout=10)
        finally:
            self._scope.close()
            client = self.runtime.store.client
            async for key in client.scan_iter(match=f"{self.runtime.config.key_prefix}*"):
                await client.delete(key)

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until no in-memory run is executing (runs may start more runs)."""
        await self.manager.wait_idle(timeout)
