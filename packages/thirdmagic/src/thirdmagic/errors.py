"""The MageFlow error hierarchy.

Every error MageFlow raises on purpose derives from :class:`MageflowError`, so
``except MageflowError`` catches them all; the categories below it let callers
handle one kind of failure without string matching.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from thirdmagic.outcome import ErrorDetails

__all__ = [
    "BulkValidationError",
    "ConfigurationError",
    "DispatchPendingError",
    "DispatchRefusedError",
    "EngineError",
    "InvalidTransitionError",
    "LockLostError",
    "MageflowError",
    "MageflowValidationError",
    "NotFoundError",
    "ResultTimeoutError",
    "SignatureCanceledError",
    "SignatureFailedError",
    "SignatureLockedError",
    "SignatureNotFoundError",
    "StoreError",
    "StoreUnavailableError",
    "SwarmClosedError",
    "SwarmFullError",
]


class MageflowError(Exception):
    """Root of every error raised by MageFlow."""


class NotFoundError(MageflowError, LookupError):
    """Something that was named does not exist (a signature key, a task name)."""


class SignatureNotFoundError(NotFoundError):
    """No signature is stored under ``key``."""

    def __init__(self, key: str, message: str | None = None) -> None:
        self.key = key
        super().__init__(message or f"no signature is stored under key {key!r}")


class InvalidTransitionError(MageflowError):
    """A lifecycle event is not allowed from the signature's current status.

    Nothing was changed when this is raised.
    """

    def __init__(self, key: str, status: str, event: str, message: str | None = None) -> None:
        self.key = key
        self.status = status
        self.event = event
        super().__init__(
            message or f"signature {key!r}: cannot {event} a signature whose status is {status!r}"
        )


class SignatureLockedError(MageflowError):
    """The signature is held by ``lock_task`` and the wait for it ran out."""

    def __init__(self, key: str, waited: float) -> None:
        self.key = key
        self.waited = waited
        super().__init__(
            f"signature {key!r} is locked by another holder; gave up after {waited:.2f}s"
        )


class LockLostError(MageflowError):
    """A ``lock_task`` holder lost its lock while inside the block.

    The lock is renewed in the background while held; this is raised when the
    block ends if a renewal found the lock gone or taken (Redis unreachable for
    longer than ``lock_ttl``, or the key deleted by hand), because from then on
    others could change the signature.
    """

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"the lock on signature {key!r} was lost while held: {reason}")


class MageflowValidationError(MageflowError, ValueError):
    """Input does not have the shape MageFlow or the task expects.

    ``field`` names the offending field or option when there is one.
    """

    def __init__(self, message: str, *, field: str | None = None, key: str | None = None) -> None:
        self.field = field
        self.key = key
        super().__init__(message)


class BulkValidationError(MageflowValidationError):
    """Items of a bulk call (``mageflow.asign_many``) that cannot be used; nothing was stored.

    ``errors`` has one ``(index, field, message)`` per problem (``field`` is
    empty when the item as a whole is wrong); ``field`` names the first one.
    """

    _SHOWN = 20

    def __init__(self, errors: list[tuple[int, str, str]]) -> None:
        self.errors = errors
        lines = [f"items[{i}].{f}: {m}" if f else f"items[{i}]: {m}" for i, f, m in errors]
        more = f"\n... and {len(lines) - self._SHOWN} more" if len(lines) > self._SHOWN else ""
        index, name, _ = errors[0]
        super().__init__(
            f"{len(errors)} problem(s) in the items; nothing was stored:\n"
            + "\n".join(lines[: self._SHOWN])
            + more,
            field=f"items[{index}].{name}" if name else f"items[{index}]",
        )


class ConfigurationError(MageflowError):
    """MageFlow is not set up for the requested operation (no store, no engine)."""


class StoreError(MageflowError):
    """The signature store failed: unreachable, timed out, or holds data MageFlow cannot read."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        self.key = key
        super().__init__(message)


class StoreUnavailableError(StoreError):
    """The store could not be reached (connection lost or refused, timed out, loading its data).

    Transient: the operation was applied completely or not at all, and every
    store operation is safe to repeat, so retrying later is the remedy. The
    worker side retries these itself (``MageflowConfig.store_retry_window``).
    """


class EngineError(MageflowError):
    """The task engine refused or failed an operation (dispatch, cancel)."""


class DispatchRefusedError(EngineError):
    """The engine refused the run: it will never run, and nothing was changed.

    The claim MageFlow made for the dispatch was taken back atomically, so the
    signature is as it was before the call (still ``pending``); fix the cause
    (an unknown task, invalid run options) and run it again.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        self.key = key
        super().__init__(message)


class DispatchPendingError(EngineError):
    """Whether the engine received the run is unknown (a timeout, a lost connection).

    The run is queued for retry and **will run**: MageFlow keeps the claim
    with the caller's run options, and the reconciler re-sends it if the
    engine never got it, at most ``reconcile_max_resends`` times. Do not run
    the signature again to "retry" it; wait for its status instead.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        self.key = key
        super().__init__(message)


class SwarmClosedError(InvalidTransitionError):
    """A task was added to a swarm that no longer accepts tasks."""


class SwarmFullError(MageflowValidationError):
    """Adding the tasks would exceed the swarm's ``max_task_allowed``."""


class SignatureFailedError(MageflowError):
    """The signature whose result was awaited ended without a result.

    ``error`` holds the stored error details (a ``thirdmagic.ErrorDetails``)
    when there are any; ``status`` is the final status (``failed`` or
    ``canceled``).
    """

    def __init__(self, key: str, status: str, error: ErrorDetails | None = None) -> None:
        self.key = key
        self.status = status
        self.error = error
        detail = ""
        if error is not None:
            detail = f": {error.type or 'error'}: {error.message}"
        super().__init__(f"signature {key!r} {status}{detail}")


class SignatureCanceledError(SignatureFailedError):
    """The awaited signature was canceled."""


class ResultTimeoutError(MageflowError, TimeoutError):
    """Waiting for a signature's result ran out of time; the signature is unchanged."""

    def __init__(self, key: str, timeout: float, status: str) -> None:
        self.key = key
        self.timeout = timeout
        self.status = status
        super().__init__(
            f"signature {key!r} has no result after {timeout:.2f}s (status {status!r})"
        )
