"""Marking the field of a callback's input model that receives a parent's return value.

Both spellings mark a field::

    class Notify(BaseModel):
        order: ReturnValue[Order]               # short form
        total: Annotated[float, ReturnValue()]  # explicit form, fully typed

Resolution order for the field a return value goes into: the marked field,
else ``mageflow_results``, else the legacy ``results``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Final, TypeVar

from pydantic import BaseModel, ConfigDict

from thirdmagic.errors import MageflowValidationError

__all__ = [
    "DEFAULT_RESULTS_FIELD",
    "LEGACY_RESULTS_FIELD",
    "ContextMessage",
    "ReturnValue",
    "inject_return_value",
    "resolve_return_field",
]

_T = TypeVar("_T")

DEFAULT_RESULTS_FIELD: Final = "mageflow_results"
LEGACY_RESULTS_FIELD: Final = "results"


class _ReturnValueMarker:
    """Runtime marker stored in ``Annotated`` metadata."""

    __slots__ = ()

    def __class_getitem__(cls, item: Any) -> Any:
        return Annotated[item, cls()]

    def __repr__(self) -> str:
        return "ReturnValue()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ReturnValueMarker)

    def __hash__(self) -> int:
        return hash(_ReturnValueMarker)


if TYPE_CHECKING:
    # For type checkers ReturnValue[T] is just T, so a field declared as
    # ``ReturnValue[Order]`` reads as an ``Order``.
    ReturnValue = Annotated[_T, _ReturnValueMarker]
else:
    ReturnValue = _ReturnValueMarker
    ReturnValue.__doc__ = """Marker for the field that receives the parent task's return value.

    ``ReturnValue[T]`` is shorthand for ``Annotated[T, ReturnValue()]``.
    """


def _marked_fields(model: type[BaseModel]) -> list[str]:
    return [
        name
        for name, info in model.model_fields.items()
        if any(isinstance(meta, _ReturnValueMarker) for meta in info.metadata)
    ]


def resolve_return_field(model: type[BaseModel] | None) -> str:
    """The field of ``model`` that receives a parent's return value.

    Without a model (the callback's input model is unknown) the default field
    name is returned. Two marked fields raise, naming both.
    """
    if model is None:
        return DEFAULT_RESULTS_FIELD
    marked = _marked_fields(model)
    if len(marked) > 1:
        raise MageflowValidationError(
            f"{model.__qualname__} marks more than one field with ReturnValue: "
            f"{', '.join(repr(m) for m in marked)}; mark exactly one",
            field=marked[1],
        )
    if marked:
        return marked[0]
    fields = model.model_fields
    if DEFAULT_RESULTS_FIELD in fields:
        return DEFAULT_RESULTS_FIELD
    if LEGACY_RESULTS_FIELD in fields:
        return LEGACY_RESULTS_FIELD
    return DEFAULT_RESULTS_FIELD


def inject_return_value(
    model: type[BaseModel] | None, payload: dict[str, Any], value: Any
) -> dict[str, Any]:
    """A copy of ``payload`` with ``value`` in the model's return-value field.

    The return value is written last: it wins over a bound kwarg of the same name,
    because a callback that asked for the result must get the result.
    """
    out = dict(payload)
    out[resolve_return_field(model)] = value
    return out


class ContextMessage(BaseModel):
    """A message model that accepts any fields and keeps them all.

    The older callbacks guide passes it as ``model_validators=ContextMessage``
    for a task whose input is free-form: the bound kwargs and the run message
    are merged and handed over unchanged, and a parent's return value lands in
    ``mageflow_results``.
    """

    model_config = ConfigDict(extra="allow")
