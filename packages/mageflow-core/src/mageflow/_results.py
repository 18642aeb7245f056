"""Waiting for a signature's outcome: ``mageflow.result`` and ``sig.aio_result``.

Every status change is published by the store's scripts on the signature's
own channel (``P ev:<key>``). A runtime keeps ONE pub/sub connection for all
its waiters: a waiter subscribes to its channel (reference counted, so 1 000
waiters on 1 000 signatures cost one SUBSCRIBE and one HMGET each), reads the
status once, then sleeps until a message arrives. Pub/sub is fire-and-forget,
so every waiter also re-reads the status every ``poll_interval`` seconds: a
message lost to a dropped connection delays the answer, never loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import traceback
import weakref
from typing import TYPE_CHECKING, Any

from redis import exceptions as redis_exc
from thirdmagic.errors import (
    MageflowValidationError,
    ResultTimeoutError,
    SignatureCanceledError,
    SignatureFailedError,
    SignatureNotFoundError,
)
from thirdmagic.outcome import MAX_TRACEBACK_CHARS, ErrorDetails

from mageflow import _payloads
from mageflow._store.keys import F

if TYPE_CHECKING:
    from redis.asyncio.client import PubSub

    from mageflow._store.redis_store import RedisStore

__all__ = ["DEFAULT_POLL_INTERVAL", "ResultWaiter", "error_payload", "read_outcome"]

log = logging.getLogger("mageflow.results")

DEFAULT_POLL_INTERVAL = 5.0
_MAX_CONCURRENT_READS = 16
_MAX_MESSAGE_CHARS = 2000


def error_payload(exc: BaseException, key: str) -> dict[str, Any]:
    """What the store keeps about a failure: type, message, the end of the traceback."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if len(tb) > MAX_TRACEBACK_CHARS:
        tb = "...\n" + tb[-MAX_TRACEBACK_CHARS:]
    message = str(exc)
    if len(message) > _MAX_MESSAGE_CHARS:
        message = message[:_MAX_MESSAGE_CHARS] + "…"
    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    return ErrorDetails(type=name, message=message, traceback=tb, signature_key=key).model_dump()


async def read_outcome(store: RedisStore, key: str) -> tuple[str, Any]:
    """(status, value) where value is the result when done; raises for failed/canceled."""
    raw = await store._guard(
        lambda: store.client.hmget(store.keys.sig(key), [F.status, F.result, F.error]),
        key=key,
    )
    status, res, err = (None if v is None else _text(v) for v in raw)
    if status is None:
        raise SignatureNotFoundError(key)
    if status == "done":
        if res is None:
            return status, None
        # a big result, or a swarm's list, is stored by reference (issue 10)
        return status, await _payloads.resolve(store, json.loads(res))
    if status in ("failed", "canceled"):
        error = ErrorDetails.from_stored(json.loads(err)) if err is not None else None
        cls = SignatureCanceledError if status == "canceled" else SignatureFailedError
        raise cls(key, status, error)
    return status, None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ResultWaiter:
    """The waiters of one runtime: one shared listener per event loop.

    A connection (and asyncio primitives) belong to the loop that made them, so
    a runtime used from two loops (two ``asyncio.run`` calls, say) gets one
    listener in each.
    """

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self._listeners: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Listener] = (
            weakref.WeakKeyDictionary()
        )

    def _listener(self) -> _Listener:
        loop = asyncio.get_running_loop()
        found = self._listeners.get(loop)
        if found is None:
            found = self._listeners[loop] = _Listener(self.store)
        return found

    async def wait(
        self, key: str, timeout: float | None, poll_interval: float = DEFAULT_POLL_INTERVAL
    ) -> Any:
        return await self._listener().wait(key, timeout, poll_interval)

    async def close(self) -> None:
        """Close this loop's pub/sub connection (waiters still waiting poll)."""
        listener = self._listeners.pop(asyncio.get_running_loop(), None)
        if listener is not None:
            await listener.close()


class _Listener:
    """One pub/sub connection shared by every waiter of a runtime in one loop."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._lock = asyncio.Lock()
        # Status reads of many waiters share a few connections: a thousand
        # waiters must not need a thousand pooled connections at once.
        self._reads = asyncio.Semaphore(_MAX_CONCURRENT_READS)

    async def _subscribe(self, channel: str, event: asyncio.Event) -> None:
        async with self._lock:
            waiters = self._waiters.setdefault(channel, set())
            waiters.add(event)
            if len(waiters) > 1:
                return
            try:
                if self._pubsub is None:
                    self._pubsub = self.store.client.pubsub(ignore_subscribe_messages=True)
                await self._pubsub.subscribe(channel)
                if self._reader is None or self._reader.done():
                    self._reader = asyncio.create_task(self._read(self._pubsub))
            except (redis_exc.RedisError, OSError):
                # Pub/sub is an optimisation: without it the waiter polls.
                log.warning("cannot subscribe to %s; falling back to polling", channel)
                await self._reset()

    async def _unsubscribe(self, channel: str, event: asyncio.Event) -> None:
        async with self._lock:
            waiters = self._waiters.get(channel)
            if waiters is None:
                return
            waiters.discard(event)
            if waiters:
                return
            del self._waiters[channel]
            if self._pubsub is not None:
                with contextlib.suppress(redis_exc.RedisError, OSError):
                    await self._pubsub.unsubscribe(channel)

    async def _reset(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _read(self, pubsub: PubSub) -> None:
        try:
            while True:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if msg is None or msg.get("type") != "message":
                    continue
                channel = _text(msg["channel"])
                for event in list(self._waiters.get(channel, ())):
                    event.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.info("result listener lost its connection (%s); waiters poll", exc)
            for waiters in list(self._waiters.values()):
                for event in waiters:
                    event.set()  # re-read now; later waits re-subscribe
            async with self._lock:
                if self._pubsub is pubsub:
                    # Current waiters go on polling; the next wait subscribes afresh.
                    self._pubsub = None
                    self._reader = None
                    self._waiters = {}
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        async with self._lock:
            self._waiters.clear()
            await self._reset()

    async def wait(
        self, key: str, timeout: float | None, poll_interval: float = DEFAULT_POLL_INTERVAL
    ) -> Any:
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout < 0):
            raise MageflowValidationError(
                f"timeout: expected a number of seconds >= 0 or None, got {timeout!r}",
                field="timeout",
            )
        if poll_interval <= 0:
            raise MageflowValidationError(
                f"poll_interval: expected a positive number, got {poll_interval!r}",
                field="poll_interval",
            )
        deadline = None if timeout is None else time.monotonic() + timeout
        channel = self.store.keys.events(key)
        event = asyncio.Event()
        await self._subscribe(channel, event)
        try:
            while True:
                # Read after subscribing: a change between the two is never missed.
                event.clear()
                async with self._reads:
                    status, value = await read_outcome(self.store, key)
                if status == "done":
                    return value
                wait_for = poll_interval
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise ResultTimeoutError(key, float(timeout or 0), status)
                    wait_for = min(wait_for, left)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), wait_for)
        finally:
            await self._unsubscribe(channel, event)
