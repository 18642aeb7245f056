"""How a run's input is put together.

Rules (documented in docs/callbacks.md):

* Task input = message, then the signature's bound kwargs on top: a bound
  kwarg wins over a message field of the same name, because binding is the
  more specific, deliberate statement.
* Success callback input = the callback's bound kwargs, then the parent's
  return value written into the callback's ReturnValue field (it always wins).
* Error callback input = the input the failed task received, then the
  callback's bound kwargs on top.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError
from thirdmagic.errors import MageflowValidationError
from thirdmagic.message import inject_return_value, resolve_return_field
from thirdmagic.signature import to_json_value

__all__ = [
    "error_callback_input",
    "message_data",
    "rebind_at_start",
    "success_callback_input",
    "task_input",
    "validate_input",
]


def message_data(msg: BaseModel | dict[str, Any] | None) -> dict[str, Any]:
    if msg is None:
        return {}
    if isinstance(msg, BaseModel):
        data = msg.model_dump(mode="json", by_alias=True)
        return dict(data)
    if isinstance(msg, dict):
        return {str(k): to_json_value(v, field=f"msg.{k}") for k, v in msg.items()}
    raise MageflowValidationError(
        f"msg: expected a pydantic model or a dict, got {type(msg).__name__}", field="msg"
    )


def task_input(msg: BaseModel | dict[str, Any] | None, bound: dict[str, Any]) -> dict[str, Any]:
    return {**message_data(msg), **bound}


def rebind_at_start(
    payload: dict[str, Any], bound: dict[str, Any], model: type[BaseModel] | None
) -> dict[str, Any]:
    """Apply kwargs updated after dispatch; a delivered return value is kept."""
    if not bound:
        return payload
    keep = resolve_return_field(model) if model is not None else None
    merged = dict(payload)
    for name, value in bound.items():
        if name == keep and name in payload:
            continue
        merged[name] = value
    return merged


def success_callback_input(
    model: type[BaseModel] | None, bound: dict[str, Any], result: Any
) -> dict[str, Any]:
    return inject_return_value(model, bound, result)


def error_callback_input(original: dict[str, Any], bound: dict[str, Any]) -> dict[str, Any]:
    return {**original, **bound}


def validate_input(
    model: type[BaseModel], data: dict[str, Any], *, key: str | None, task_name: str
) -> BaseModel:
    """``data`` validated as ``model``, or an error naming the first bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "<root>"
        where = f" (signature {key!r})" if key else ""
        raise MageflowValidationError(
            f"input of task {task_name!r}{where} does not fit {model.__qualname__}: "
            f"field {loc!r}: {first['msg']}",
            field=loc,
            key=key,
        ) from exc
