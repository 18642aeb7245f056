"""Signature locks: who holds what in this task, and waiting for a holder to let go.

A lock is a Redis key with a random token and a TTL (see the store). The
tokens this asyncio task holds live in a ContextVar, so re-entering a lock in
the same task is free and another task never borrows it. Every store call that
changes a signature passes the caller's token for that key; the store refuses
with ``LockedSignal`` while someone else holds it, and :func:`waiting_for_lock`
retries with backoff until ``lock_wait`` runs out.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from typing import TypeVar

from thirdmagic.errors import SignatureLockedError, SignatureNotFoundError
from thirdmagic.signature import ChainSignature, Signature, SwarmSignature

from mageflow._store.redis_store import LockedSignal, RedisStore
from mageflow.config import MageflowConfig

__all__ = ["held", "lock", "token", "waiting_for_lock"]

_T = TypeVar("_T")
_held_locks: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("mageflow_held_locks")


def held() -> dict[str, str]:
    """Keys this task holds, with their tokens."""
    return _held_locks.get({})


def token(key: str) -> str:
    """This task's token for ``key``, or "" when it does not hold it."""
    return held().get(key, "")


async def waiting_for_lock(
    config: MageflowConfig,
    key: str,
    call: Callable[[], Awaitable[_T]],
    wait: timedelta | None = None,
) -> _T:
    """``call()``, retried while another holder has ``key`` locked."""
    deadline = time.monotonic() + (wait or config.lock_wait).total_seconds()
    interval = config.lock_poll_interval.total_seconds()
    started = time.monotonic()
    while True:
        try:
            return await call()
        except LockedSignal:
            if time.monotonic() >= deadline:
                raise SignatureLockedError(key, time.monotonic() - started) from None
            await asyncio.sleep(interval)
            interval = min(interval * 2, 0.5)


@asynccontextmanager
async def lock(
    store: RedisStore, key: str, *, wait: timedelta | float | None = None
) -> AsyncIterator[Signature | None]:
    """Hold ``key``: no other caller changes its status or deletes it meanwhile.

    Yields the signature as read under the lock.
    """
    holding = held()
    if key in holding:
        yield await store.load(key)
        return
    new_token = uuid.uuid4().hex
    wait_td = timedelta(seconds=wait) if isinstance(wait, (int, float)) else wait

    async def acquire() -> Signature:
        got = await store.lock_and_load(key, new_token)
        if got is None:
            raise LockedSignal(key)
        return got

    sig = await waiting_for_lock(store.config, key, acquire, wait_td)
    reset = _held_locks.set({**holding, key: new_token})
    try:
        async with AsyncExitStack() as members:
            # A container is held as a whole: its members (recursively) too,
            # so no step or member changes status while the lock is held.
            if isinstance(sig, (ChainSignature, SwarmSignature)):
                for member in await store.members(sig):
                    try:
                        await members.enter_async_context(lock(store, member, wait=wait))
                    except SignatureNotFoundError:
                        continue
            yield sig
    finally:
        _held_locks.reset(reset)
        await store.release_lock(key, new_token)
