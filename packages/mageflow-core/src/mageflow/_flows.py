"""Module-level outcome, steering and query API on the default runtime.

``await mageflow.result(key)``, ``mageflow.cancel``, ``mageflow.retry``,
``mageflow.progress``, ``mageflow.list_signatures``, ``mageflow.stuck_signatures``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from thirdmagic.outcome import ContainerProgress
from thirdmagic.signature import Signature
from thirdmagic.status import SignatureStatus, TaskStatus

from mageflow import _query
from mageflow._api import get_runtime
from mageflow._query import StuckSignature
from mageflow._results import DEFAULT_POLL_INTERVAL

__all__ = ["cancel", "list_signatures", "progress", "result", "retry", "stuck_signatures"]


async def result(
    key: str, timeout: float | None = None, *, poll_interval: float = DEFAULT_POLL_INTERVAL
) -> Any:
    """Wait for the final result of ``key``.

    A task's return value, a chain's last step's, a swarm's member results in
    admission order. Raises ``SignatureFailedError`` (with ``.error`` details),
    ``SignatureCanceledError``, ``ResultTimeoutError`` after ``timeout`` seconds,
    ``SignatureNotFoundError``.
    """
    return await get_runtime().result(key, timeout, poll_interval)


async def cancel(key: str, *, error_callbacks: bool = False) -> TaskStatus:
    """Cancel ``key`` for good (see ``Signature.cancel``)."""
    return await get_runtime().cancel(key, error_callbacks=error_callbacks)


async def retry(key: str) -> TaskStatus:
    """Run a failed or canceled task signature again with its stored input."""
    return await get_runtime().retry(key)


async def progress(key: str) -> ContainerProgress:
    """Counters of a chain or swarm."""
    return await get_runtime().progress(key)


async def list_signatures(
    *,
    status: SignatureStatus | str | None = None,
    task: str | None = None,
    identifiers: Any = None,
    roots: bool = False,
    limit: int = 50,
) -> list[Signature]:
    """Signatures by status, task name and/or identifiers, newest first."""
    return await _query.list_signatures(
        get_runtime().store,
        status=status,
        task=task,
        identifiers=identifiers,
        roots=roots,
        limit=limit,
    )


async def stuck_signatures(
    *,
    older_than: timedelta = timedelta(minutes=30),
    claim_older_than: timedelta = timedelta(minutes=5),
    limit: int = 100,
) -> list[StuckSignature]:
    """Signatures that may be stuck (see ``_query.stuck_signatures``)."""
    return await _query.stuck_signatures(
        get_runtime().store,
        older_than=older_than,
        claim_older_than=claim_older_than,
        limit=limit,
    )
