from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests._redis import redis_server

_ROOT = Path(__file__).parent

# MageFlow's own test helpers, dogfooded (tests/integration/test_testing_helpers.py).
pytest_plugins = ["mageflow.testing.plugin"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        layer = Path(str(item.fspath)).relative_to(_ROOT).parts[0]
        if layer in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, layer))


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        os.environ.setdefault("MAGEFLOW_TEST_REDIS_URL", url)
        yield url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def key_prefix() -> str:
    """A fresh key prefix per test, so tests never see each other's keys."""
    return f"mft:{uuid.uuid4().hex[:8]}:"
