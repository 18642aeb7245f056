"""What a finished signature leaves behind: error details and container progress.

An error callback's input model may mark one field with ``ErrorInfo`` to
receive the details of the failure that triggered it::

    class Alert(BaseModel):
        order_id: int
        error: ErrorInfo[ErrorDetails | None] = None

Without a marked field the callback's input is exactly the message the failed
task received (plus the callback's own kwargs), as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Final, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from thirdmagic.errors import MageflowValidationError

__all__ = [
    "MAX_TRACEBACK_CHARS",
    "ContainerProgress",
    "ErrorDetails",
    "ErrorInfo",
    "resolve_error_field",
]

_T = TypeVar("_T")

MAX_TRACEBACK_CHARS: Final = 8000
"""Tracebacks are cut to their last this many characters before they are stored."""


class ErrorDetails(BaseModel):
    """Why a signature failed: exception type, message and a bounded traceback."""

    model_config = ConfigDict(frozen=True)

    type: str = ""
    message: str = ""
    traceback: str = ""
    signature_key: str | None = Field(
        default=None, description="The signature whose failure this is (a container's member)."
    )

    @classmethod
    def from_stored(cls, value: Any) -> ErrorDetails:
        """Details from what the store holds (older versions stored a plain string)."""
        if isinstance(value, dict):
            return cls.model_validate(value)
        if isinstance(value, str):
            kind, sep, message = value.partition(": ")
            return cls(type=kind, message=message) if sep else cls(message=value)
        return cls(message=str(value))


class ContainerProgress(BaseModel):
    """Where a chain or swarm stands, read from its counters.

    ``admitted`` members in total; ``queued`` not started yet; ``running``;
    ``done``/``failed`` finished; ``skipped`` never reached by a container
    that failed (a chain's later steps, a swarm's queued members);
    ``current_step`` the index of a chain's running step (None for a swarm).
    """

    model_config = ConfigDict(frozen=True)

    key: str
    kind: str
    status: str
    admitted: int = 0
    queued: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    current_step: int | None = None


class _ErrorInfoMarker:
    __slots__ = ()

    def __class_getitem__(cls, item: Any) -> Any:
        return Annotated[item, cls()]

    def __repr__(self) -> str:
        return "ErrorInfo()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ErrorInfoMarker)

    def __hash__(self) -> int:
        return hash(_ErrorInfoMarker)


if TYPE_CHECKING:
    ErrorInfo = Annotated[_T, _ErrorInfoMarker]
else:
    ErrorInfo = _ErrorInfoMarker
    ErrorInfo.__doc__ = """Marker for the field of an error callback that receives ``ErrorDetails``.

    ``ErrorInfo[T]`` is shorthand for ``Annotated[T, ErrorInfo()]``.
    """


def resolve_error_field(model: type[BaseModel] | None) -> str | None:
    """The field of ``model`` marked ``ErrorInfo``, or None (the input stays unchanged)."""
    if model is None:
        return None
    marked = [
        name
        for name, info in model.model_fields.items()
        if any(isinstance(meta, _ErrorInfoMarker) for meta in info.metadata)
    ]
    if len(marked) > 1:
        raise MageflowValidationError(
            f"{model.__qualname__} marks more than one field with ErrorInfo: "
            f"{', '.join(repr(m) for m in marked)}; mark exactly one",
            field=marked[1],
        )
    return marked[0] if marked else None
