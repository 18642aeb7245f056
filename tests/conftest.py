from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis.asyncio as aioredis

from tests._redis import redis_server

if TYPE_CHECKING:
    from tests.e2e._engine import Engine

_ROOT = Path(__file__).parent

# MageFlow's own test helpers, dogfooded (tests/integration/test_testing_helpers.py).
pytest_plugins = ["mageflow.testing.plugin"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        layer = Path(str(item.fspath)).relative_to(_ROOT).parts[0]
        if layer in ("unit", "integration", "e2e", "chaos"):
            item.add_marker(getattr(pytest.mark, layer))


@pytest.fixture(scope="session")
def hatchet_engine() -> Iterator[Engine]:
    """One real engine for the session (tests/e2e and tests/chaos share it)."""
    from tests.e2e._engine import start_engine_or_skip

    engine = start_engine_or_skip()
    with engine.exported_env():
        yield engine
    engine.stop()


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
