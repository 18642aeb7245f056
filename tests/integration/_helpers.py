"""Helpers shared by the integration tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import redis.asyncio as aioredis
from mageflow import MageflowConfig, MageflowRuntime
from mageflow._store.keys import F
from mageflow._store.redis_store import RedisStore


def fast_config(key_prefix: str, **changes: Any) -> MageflowConfig:
    """The test config: short lock waits (a test that waits on a lock fails fast)."""
    settings: dict[str, Any] = {
        "key_prefix": key_prefix,
        "lock_wait": timedelta(milliseconds=500),
        "lock_poll_interval": timedelta(milliseconds=10),
    }
    return MageflowConfig(**{**settings, **changes})


class Raw:
    """Direct access to what the store wrote, for before/after comparisons."""

    def __init__(self, client: aioredis.Redis, rt: MageflowRuntime) -> None:
        self.client = client
        self.rt = rt

    def sig_key(self, key: str) -> str:
        return self.rt.store.keys.sig(key)

    async def hash(self, key: str) -> dict[str, str]:
        return await self.client.hgetall(self.sig_key(key))  # type: ignore[no-any-return]

    async def pttl(self, key: str) -> int:
        return int(await self.client.pttl(self.sig_key(key)))

    async def status(self, key: str) -> str | None:
        return await self.client.hget(self.sig_key(key), F.status)  # type: ignore[no-any-return]

    async def snapshot(self, indexes: bool = False) -> dict[str, Any]:
        """Every key under the prefix: its type and value (TTL excluded).

        The query indexes (``idx:*``) are left out unless asked for: they are
        derived data, checked by tests/integration/test_query.py.
        """
        out: dict[str, Any] = {}
        idx = f"{self.rt.config.key_prefix}idx:"
        async for k in self.client.scan_iter(match=f"{self.rt.config.key_prefix}*", count=1000):
            if not indexes and k.startswith(idx):
                continue
            kind = await self.client.type(k)
            if kind == "hash":
                out[k] = ("hash", await self.client.hgetall(k))
            elif kind == "string":
                out[k] = ("string", await self.client.get(k))
            else:
                out[k] = (kind, None)
        return out


async def swarm_counters(store: RedisStore, key: str) -> dict[str, int]:
    """A swarm's member counters as stored."""
    names = {
        "admitted": F.admitted,
        "running": F.running,
        "succeeded": F.succeeded,
        "failed": F.failed,
    }
    values = await store.client.hmget(store.keys.sig(key), list(names.values()))
    return {name: int(v) if v is not None else 0 for name, v in zip(names, values, strict=True)}


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 5.0, what: str = "condition"
) -> None:
    """Poll ``check`` until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)
