"""Module-level API: ``mageflow.asign(...)`` and friends, on the default runtime."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import redis.asyncio as aioredis
from pydantic import BaseModel
from thirdmagic.backend import current_backend
from thirdmagic.errors import ConfigurationError
from thirdmagic.signature import (
    ChainSignature,
    Signature,
    SwarmConfig,
    SwarmSignature,
    TaskSignature,
)
from thirdmagic.status import LifecycleEvent, PauseActionTypes, pause_event

from mageflow._lock_handle import LockHandle, check_lock_options
from mageflow._reconcile import ReconcileReport
from mageflow._runtime import MageflowRuntime
from mageflow._store.redis_store import RedisStore
from mageflow.config import MageflowConfig
from mageflow.manager import TaskManager

__all__ = [
    "achain",
    "asign",
    "asign_many",
    "aswarm",
    "chain",
    "configure",
    "create_runtime",
    "get_runtime",
    "load_signature",
    "lock_task",
    "pause",
    "reconcile",
    "recover",
    "remove",
    "resume",
    "resume_task",
    "sign",
    "submit",
    "swarm",
]


def redis_client(redis: aioredis.Redis | str | None) -> aioredis.Redis:
    """A client from a client, a URL, or ``REDIS_URL``."""
    if isinstance(redis, aioredis.Redis):
        return redis
    url = redis if isinstance(redis, str) else os.environ.get("REDIS_URL")
    if not url:
        raise ConfigurationError(
            "no Redis configured: pass redis_client (a redis.asyncio.Redis or a URL) "
            "or set REDIS_URL"
        )
    try:
        # A blocking pool: past max_connections (redis-py's default is 100) an
        # operation waits for a free connection instead of failing with
        # "Too many connections", e.g. in a worker with many slots.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, decode_responses=True, max_connections=100
        )
    except ValueError as exc:
        raise ConfigurationError(f"redis_client: invalid Redis URL {url!r}: {exc}") from exc
    from_pool = getattr(aioredis.Redis, "from_pool", None)  # redis-py >= 5.0.1
    return from_pool(pool) if from_pool else aioredis.Redis(connection_pool=pool)


def create_runtime(
    redis: aioredis.Redis | str | None = None,
    manager: TaskManager | None = None,
    config: MageflowConfig | None = None,
) -> MageflowRuntime:
    """Build a runtime without making it the default: use it with ``runtime.activate()``."""
    return MageflowRuntime(RedisStore(redis_client(redis), config), manager)


def configure(
    redis: aioredis.Redis | str | None = None,
    manager: TaskManager | None = None,
    config: MageflowConfig | None = None,
) -> MageflowRuntime:
    """Build a runtime and make it the process default (``runtime.install()``).

    The module-level functions and signature methods use the active runtime:
    the one a ``with runtime.activate():`` block chose in this context, else
    the process default. Creating a ``Mageflow`` client calls this too.
    """
    return create_runtime(redis, manager, config).install()


def get_runtime() -> MageflowRuntime:
    """The active runtime; ``ConfigurationError`` when none was configured."""
    backend = current_backend()
    if backend is None:
        raise ConfigurationError(
            "no MageFlow runtime is configured: create a Mageflow client "
            "(mageflow_hatchet.Mageflow(hatchet, redis_client=...)) or call "
            "mageflow.configure(redis, manager=...) first"
        )
    if not isinstance(backend, MageflowRuntime):
        raise ConfigurationError(
            f"the active signature backend is a {type(backend).__name__}, not a MageflowRuntime"
        )
    return backend


async def asign(task: Any, **options: Any) -> TaskSignature:
    """Create and store a signature of ``task`` (a name or a task object).

    ``options`` may set any signature field (``kwargs``, ``success_callbacks``,
    ``error_callbacks``, ``model_validators``, ``task_status``,
    ``task_identifiers``, ``creation_time``, ``key``); every other keyword is
    bound as a kwarg of the task.
    """
    return await get_runtime().sign(task, **options)


sign = asign


async def asign_many(
    task: Any, items: Sequence[BaseModel | Mapping[str, Any]], **options: Any
) -> list[TaskSignature]:
    """Create and store one signature of ``task`` per item, in bulk.

    Each item (a mapping or a model) is that signature's own bound kwargs, on
    top of the kwargs in ``options``; the other options (callbacks, model,
    identifiers...) are shared, as in :func:`asign`. Every item is checked
    first: ``BulkValidationError`` (a ``MageflowValidationError``) lists every
    bad item by index and field, and nothing is stored. Costs one round trip
    per call (``create_many.lua`` per 1 000 signatures, pipelined).
    """
    return await get_runtime().sign_many(task, items, **options)


async def achain(
    tasks: Any, name: str | None = None, success: Any = None, error: Any = None, **kwargs: Any
) -> ChainSignature:
    """A chain of two or more tasks (signatures, keys, task names or task objects).

    Each step's return value is injected into the next step's ReturnValue
    field; ``kwargs`` reach every step; ``success``/``error`` are the chain's
    callbacks.
    """
    return await get_runtime().chain(tasks, name, success, error, **kwargs)


chain = achain


async def aswarm(
    tasks: Any = None,
    success_callbacks: Any = None,
    error_callbacks: Any = None,
    config: SwarmConfig | None = None,
    is_swarm_closed: bool = False,
    **kwargs: Any,
) -> SwarmSignature:
    """A swarm: members run in parallel under ``config.max_concurrency``."""
    return await get_runtime().swarm(
        tasks, success_callbacks, error_callbacks, config, is_swarm_closed, **kwargs
    )


swarm = aswarm


async def submit(spec: Any) -> Signature:
    """Store a flow built elsewhere — with ``thirdmagic`` alone — and return its root.

    ``spec`` is a ``thirdmagic.FlowSpec``, its JSON text or dict form, or a
    signature object (with the signature objects attached to it as callbacks
    or members). All or nothing: if any signature is refused, nothing of the
    spec stays stored. Run the returned signature with ``aio_run_no_wait``.
    """
    return await get_runtime().submit(spec)


async def load_signature(key: str) -> Signature | None:
    """The signature stored under ``key``, or None."""
    return await get_runtime().load(key)


async def _apply(key: str, event: LifecycleEvent) -> None:
    await get_runtime().apply(key, event)


async def resume(key: str) -> None:
    """Resume a suspended or interrupted signature; a parked run is replayed once."""
    await _apply(key, LifecycleEvent.RESUME)


resume_task = resume


async def pause(key: str, pause_type: PauseActionTypes = PauseActionTypes.SUSPEND) -> None:
    """Suspend (graceful) or interrupt (cancel the running run) a signature."""
    event = pause_event(pause_type)
    await _apply(key, event)


async def remove(key: str, with_error: bool = True, with_success: bool = True) -> None:
    """Delete a signature and, unless told otherwise, its callbacks (recursively)."""
    await get_runtime().remove(key, with_error=with_error, with_success=with_success)


def lock_task(key: str, *, wait: timedelta | float | None = None) -> LockHandle:
    """Hold ``key`` locked: ``async with lock_task(key) as sig`` or ``held = await lock_task(key)``.

    While held, no other caller can change the signature's status or delete
    it: they wait up to ``lock_wait`` and then get ``SignatureLockedError``.
    The lock is renewed in the background while held; it expires after
    ``lock_ttl`` only when its holder is gone. ``wait=`` (seconds or a
    timedelta) bounds how long acquiring may wait. Any other keyword is
    refused when ``lock_task`` is called (``TypeError`` naming it), not when
    the block starts.
    """
    return LockHandle(key, get_runtime, check_lock_options({"wait": wait}))


async def reconcile(
    older_than: timedelta | None = None, limit: int | None = None
) -> ReconcileReport:
    """One reconciler sweep (see ``MageflowRuntime.reconcile`` and docs/lifecycle.md)."""
    return await get_runtime().reconcile(older_than, limit)


async def recover(older_than: timedelta = timedelta(minutes=5), limit: int = 1000) -> int:
    """A reconciler sweep; returns how many dispatches it sent again (older name)."""
    return await get_runtime().recover(older_than, limit)
