"""The in-memory engine passes the adapter conformance kit (real Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from mageflow import MageflowConfig, MageflowRuntime
from mageflow.inmemory import InMemoryTaskManager
from mageflow.testing import InMemoryFlow
from mageflow.testing.conformance import TaskManagerConformance
from mageflow.testing.conformance_tasks import CONFORMANCE_TASKS
from thirdmagic.backend import current_backend, set_backend


def register(manager: InMemoryTaskManager) -> None:
    for spec in CONFORMANCE_TASKS:
        manager.task(spec.name, input_validator=spec.input_model, retries=spec.retries)(spec.fn)


class TestInMemoryConformance(TaskManagerConformance):
    @pytest.fixture
    async def conformance_runtime(
        self, redis_client: aioredis.Redis, key_prefix: str
    ) -> AsyncIterator[MageflowRuntime]:
        flow = InMemoryFlow(redis_client, config=MageflowConfig(key_prefix=key_prefix))
        register(flow.manager)
        saved = current_backend()
        async with flow:
            flow.runtime.install()
            try:
                yield flow.runtime
            finally:
                set_backend(saved)

    @pytest.fixture
    def conformance_timeout(self) -> float:
        return 10.0
