"""Hatchet errors mapped to MageFlow's at the seam, in one place.

Every call from the adapter into hatchet-sdk that can fail goes through
:func:`map_hatchet_exceptions`, which raises ``EngineError ... from exc`` with
a message saying what went wrong in MageFlow's terms: an unknown task (a
programming or deployment error) reads differently from an engine that cannot
be reached (transient). The control-flow signals are mapped here too:
MageFlow's ``NonRetryable`` becomes Hatchet's ``NonRetryableException`` on the
way out of a task, so the engine does not retry what core calls final.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from hatchet_sdk.clients.rest import exceptions as rest_exc
from hatchet_sdk.exceptions import DedupeViolationError, NonRetryableException
from mageflow.engine import NonRetryable
from thirdmagic.errors import EngineError, MageflowError

__all__ = ["ExecutionTimeoutError", "engine_error", "map_hatchet_exceptions", "to_hatchet_signal"]


class ExecutionTimeoutError(NonRetryable, NonRetryableException):
    """The task body ran past its execution timeout; no retry follows.

    Both MageFlow's ``NonRetryable`` (so core records the final failure) and
    Hatchet's ``NonRetryableException`` (so the engine does not retry).
    """


# gRPC status names (``grpc.StatusCode.X.name``): hatchet-sdk lets grpc errors
# through from its admin client.
_GRPC_REASONS: Mapping[str, str] = {
    "NOT_FOUND": "the engine does not know it (is a worker registered for it?)",
    "INVALID_ARGUMENT": "the engine refused the request as invalid",
    "FAILED_PRECONDITION": "the engine refused the request",
    "ALREADY_EXISTS": "the engine already has it",
    "UNAVAILABLE": "the engine cannot be reached",
    "DEADLINE_EXCEEDED": "the engine did not answer in time",
    "UNAUTHENTICATED": "the engine refused the client token",
    "PERMISSION_DENIED": "the client token may not do this",
    "RESOURCE_EXHAUSTED": "the engine is overloaded or rate limited",
}

_REST_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (rest_exc.NotFoundException, "the engine does not know it"),
    (rest_exc.UnauthorizedException, "the engine refused the client token"),
    (rest_exc.ForbiddenException, "the client token may not do this"),
    (rest_exc.TooManyRequestsException, "the engine is rate limiting"),
    (rest_exc.RestTransportError, "the engine cannot be reached"),
    (rest_exc.BadRequestException, "the engine refused the request as invalid"),
    (rest_exc.ApiException, "the engine's API failed"),
    (DedupeViolationError, "the engine refused a duplicate"),
)


def _grpc_status(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    if not callable(code):
        return ""
    try:
        return str(getattr(code(), "name", ""))
    except Exception:
        return ""


def _reason(exc: BaseException) -> str:
    status = _grpc_status(exc)
    if status in _GRPC_REASONS:
        return _GRPC_REASONS[status]
    for kind, reason in _REST_REASONS:
        if isinstance(exc, kind):
            return reason
    return "the hatchet client failed"


def engine_error(what: str, exc: BaseException) -> EngineError:
    """The ``EngineError`` for ``exc`` raised while doing ``what`` (its cause is set)."""
    error = EngineError(f"hatchet {what} failed: {_reason(exc)}: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


@contextmanager
def map_hatchet_exceptions(what: str) -> Iterator[None]:
    """Turn any hatchet-sdk failure inside the block into ``EngineError`` naming ``what``."""
    try:
        yield
    except MageflowError:
        raise
    except Exception as exc:
        raise engine_error(what, exc) from exc


def to_hatchet_signal(exc: BaseException) -> BaseException:
    """What a task raises to Hatchet for ``exc``: core's NonRetryable becomes Hatchet's."""
    if isinstance(exc, NonRetryable) and not isinstance(exc, NonRetryableException):
        mapped = NonRetryableException(str(exc))
        mapped.__cause__ = exc
        return mapped
    return exc
