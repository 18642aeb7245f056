"""Fixtures: a real Redis, an in-memory engine and a configured mageflow runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator

import mageflow
import pytest
import redis.asyncio as aioredis
from mageflow import MageflowConfig, MageflowRuntime
from mageflow.inmemory import InMemoryTaskManager

from tests.integration._helpers import Raw, fast_config


@pytest.fixture
def manager() -> InMemoryTaskManager:
    return InMemoryTaskManager()


@pytest.fixture
def config(key_prefix: str) -> MageflowConfig:
    return fast_config(key_prefix)


@pytest.fixture
async def runtime(
    redis_client: aioredis.Redis, manager: InMemoryTaskManager, config: MageflowConfig
) -> AsyncIterator[MageflowRuntime]:
    rt = mageflow.configure(redis_client, manager, config)
    await rt.store.prepare()
    try:
        yield rt
    finally:
        try:
            await manager.wait_idle(timeout=5)
        finally:
            async for k in redis_client.scan_iter(match=f"{config.key_prefix}*", count=1000):
                await redis_client.delete(k)


@pytest.fixture
def raw(redis_client: aioredis.Redis, runtime: MageflowRuntime) -> Raw:
    return Raw(redis_client, runtime)


@pytest.fixture
def mageflow_redis_url(redis_url: str) -> str:
    """The mageflow.testing.plugin fixtures use the test session's Redis."""
    return redis_url
