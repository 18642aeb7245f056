"""What ``lock_task`` returns: a lock taken with ``async with`` or with ``await``.

The spec shows ``lock_task(key, **kwargs)`` as a plain call. Both forms
really lock: ``async with lock_task(key) as sig`` and
``held = await lock_task(key)`` (then ``await held.release()``). A handle that
is neither entered nor awaited took no lock, and says so when it is collected.

While held, the lock (and the member locks of a container) is renewed in the
background every third of ``lock_ttl``, so it never lapses under a live
holder; ``lock_ttl`` only bounds how long a *crashed* holder blocks others. A
failed renewal is logged as an error at once and raised as ``LockLostError``
when the block ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from collections.abc import Callable, Generator
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from datetime import timedelta
from types import TracebackType
from typing import Any

from thirdmagic.errors import (
    LockLostError,
    MageflowValidationError,
    SignatureNotFoundError,
    StoreError,
)
from thirdmagic.signature import Signature

from mageflow._locks import held as _held
from mageflow._runtime import MageflowRuntime

__all__ = ["HeldLock", "LockHandle", "check_lock_options"]

log = logging.getLogger("mageflow")

_LOCK_OPTIONS = ("wait",)


def check_lock_options(kwargs: dict[str, Any]) -> timedelta | float | None:
    """The ``wait`` option; any other keyword is refused now, not when the block starts."""
    unknown = sorted(set(kwargs) - set(_LOCK_OPTIONS))
    if unknown:
        raise MageflowValidationError(
            f"lock_task: unknown keyword argument(s) {', '.join(repr(u) for u in unknown)}; "
            f"accepted: {', '.join(_LOCK_OPTIONS)}",
            field=unknown[0],
        )
    wait = kwargs.get("wait")
    if wait is not None and not isinstance(wait, (int, float, timedelta)):
        raise MageflowValidationError(
            f"wait: expected seconds or a timedelta, got {type(wait).__name__}", field="wait"
        )
    return wait


class HeldLock:
    """A held ``lock_task`` lock: ``signature`` as read under it, ``release()`` to let go."""

    def __init__(self, key: str, signature: Signature, stack: AsyncExitStack) -> None:
        self.key = key
        self.signature = signature
        self._stack = stack
        self._renewer: asyncio.Task[None] | None = None
        self._lost: LockLostError | None = None
        self._released = False
        # release() stops the renewer with this flag as well as cancel(): on
        # Python 3.11, asyncio.wait_for (redis-py's send, under a socket
        # timeout) can swallow a cancellation that lands as its command
        # completes, and the renewer then went on renewing a released lock
        # forever while release() waited for it
        self._stopping = False
        self._tokens: dict[str, str] = {}
        self._every = 0.0
        self._ttl = 0.0
        self._confirmed = 0.0

    @property
    def lost(self) -> LockLostError | None:
        """Set once a renewal found the lock gone; ``release()`` raises it."""
        return self._lost

    def _start_renewing(self, runtime: MageflowRuntime, tokens: dict[str, str]) -> None:
        self._runtime = runtime
        self._tokens = tokens
        self._ttl = runtime.config.lock_ttl.total_seconds()
        self._every = max(self._ttl / 3, 0.01)
        self._confirmed = time.monotonic()
        self._renewer = asyncio.create_task(self._renew_every(self._every))

    async def _renew_all(self) -> bool:
        """Renew every lock this holder took; False once one is lost for good."""
        for key, token in self._tokens.items():
            try:
                kept = await self._runtime.store.renew_lock(key, token)
            except StoreError as exc:
                # loud at once; lost only once the lock may have expired meanwhile
                log.error("lock_task(%r): renewing the lock on %r failed: %s", self.key, key, exc)
                if time.monotonic() - self._confirmed < self._ttl:
                    return True
                return self._mark_lost(key, f"renewing it failed for longer than lock_ttl: {exc}")
            if not kept:
                return self._mark_lost(key, "it expired or was taken by another holder")
        self._confirmed = time.monotonic()
        return True

    def _mark_lost(self, key: str, reason: str) -> bool:
        self._lost = LockLostError(key, reason)
        log.error(
            "lock_task(%r): the lock on %r was lost while held (%s); other callers may "
            "change the signature from now on",
            self.key,
            key,
            reason,
        )
        return False

    async def _renew_every(self, every: float) -> None:
        while not self._stopping:
            await asyncio.sleep(every)
            if self._stopping or not await self._renew_all():
                return

    async def release(self) -> None:
        """Release the lock (and member locks); raise ``LockLostError`` if it lapsed."""
        if self._released:
            return
        self._released = True
        try:
            if self._renewer is not None:
                self._stopping = True
                self._renewer.cancel()
                await asyncio.gather(self._renewer, return_exceptions=True)
                if self._lost is None and time.monotonic() - self._confirmed >= self._every:
                    # a renewal was due: a lapse since the last one must not pass
                    # unnoticed (a short hold skips this, keeping lock_task at 2 trips)
                    await self._renew_all()
        finally:
            await self._stack.aclose()
        if self._lost is not None:
            raise self._lost

    async def __aenter__(self) -> Signature:
        return self.signature

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.release()


class LockHandle:
    """Returned by ``lock_task``: use ``async with`` or ``await``."""

    def __init__(
        self,
        key: str,
        runtime: Callable[[], MageflowRuntime],
        wait: timedelta | float | None,
    ) -> None:
        self.key = key
        self._runtime = runtime
        self._wait = wait
        self._held: HeldLock | None = None
        self._used = False

    async def _acquire(self) -> HeldLock:
        self._used = True
        runtime = self._runtime()
        before = dict(_held())
        stack = AsyncExitStack()
        lock_cm: AbstractAsyncContextManager[Signature | None] = runtime.lock(
            self.key, wait=self._wait
        )
        sig = await stack.enter_async_context(lock_cm)
        if sig is None:
            await stack.aclose()
            raise SignatureNotFoundError(self.key)
        held = HeldLock(self.key, sig, stack)
        # only the locks this call took: an outer holder renews its own
        mine = {k: t for k, t in _held().items() if before.get(k) != t}
        if mine:
            held._start_renewing(runtime, mine)
        return held

    def __await__(self) -> Generator[Any, None, HeldLock]:
        return self._acquire().__await__()

    async def __aenter__(self) -> Signature:
        self._held = await self._acquire()
        return self._held.signature

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        held, self._held = self._held, None
        if held is not None:
            await held.release()

    def __del__(self) -> None:
        if not self._used:
            message = (
                f"lock_task({self.key!r}) was neither awaited nor used with 'async with': "
                "no lock was taken"
            )
            log.error(message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)
