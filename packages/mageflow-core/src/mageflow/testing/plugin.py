"""pytest fixtures for testing your flows on the in-memory engine.

Enable in your ``conftest.py``::

    pytest_plugins = ["mageflow.testing.plugin"]

``mageflow_in_memory`` gives an :class:`~mageflow.testing.InMemoryFlow` whose
runtime is the process default for the test (restored afterwards), under a
fresh key prefix, on the Redis named by the ``mageflow_redis_url`` fixture
(override it, or set ``REDIS_URL``). Async fixtures need pytest-asyncio.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
from thirdmagic.backend import current_backend, set_backend

from mageflow.config import MageflowConfig
from mageflow.testing._flow import InMemoryFlow

__all__ = ["mageflow_in_memory", "mageflow_redis_url"]


@pytest.fixture
def mageflow_redis_url() -> str:
    """The Redis the flows use: ``REDIS_URL``. Override this fixture to choose another."""
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.fail(
            "mageflow_in_memory needs a Redis: set REDIS_URL or override mageflow_redis_url"
        )
    return url


@pytest.fixture
async def mageflow_in_memory(mageflow_redis_url: str) -> AsyncIterator[InMemoryFlow]:
    """An in-memory engine and runtime for one test, installed as the default runtime."""
    config = MageflowConfig(key_prefix=f"mftest:{uuid.uuid4().hex[:8]}:")
    saved = current_backend()
    async with InMemoryFlow(mageflow_redis_url, config=config) as flow:
        flow.runtime.install()
        try:
            yield flow
        finally:
            set_backend(saved)
