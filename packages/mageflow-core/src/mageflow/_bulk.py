"""Creating many task signatures at once: ``mageflow.asign_many``.

Every item is checked before anything is written, and every problem is
reported at once, by index and field. The signatures share everything but
their key and bound kwargs, so the shared part is validated and encoded once
and each item costs a key, its kwargs and a copy. They are written by
``create_many.lua``, ``BATCH`` per script call, every batch in one pipelined
round trip; a refused batch removes the ones already written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from thirdmagic.errors import BulkValidationError, MageflowValidationError
from thirdmagic.signature import SignatureKwargs, TaskSignature, new_key, to_json_value

from mageflow._store.codec import encode_signature, jdump
from mageflow._store.keys import KWARG_PREFIX

if TYPE_CHECKING:
    from mageflow._runtime import MageflowRuntime

__all__ = ["BATCH", "member_keys", "sign_many"]

BATCH = 1000
"""Signatures per ``create_many`` script call: bounds how long one call holds the server."""


def _item_kwargs(
    index: int, item: Any, model: type[BaseModel] | None, errors: list[tuple[int, str, str]]
) -> dict[str, Any] | None:
    if isinstance(item, BaseModel):
        return dict(item.model_dump(mode="json", by_alias=True))
    if not isinstance(item, Mapping):
        errors.append(
            (index, "", f"expected a mapping or a pydantic model, got {type(item).__name__}")
        )
        return None
    out: dict[str, Any] = {}
    for name, value in item.items():
        try:
            out[str(name)] = to_json_value(value, field=str(name))
        except MageflowValidationError as exc:
            errors.append((index, str(name), str(exc)))
    if model is not None and out:
        try:
            model.model_validate(out)
        except ValidationError as exc:
            # kwargs are a part of the input: only fields that are there must fit
            for err in exc.errors():
                if err["type"] != "missing":
                    loc = ".".join(str(p) for p in err["loc"]) or "<root>"
                    errors.append((index, loc, err["msg"]))
    return out


async def sign_many(
    runtime: MageflowRuntime, task: Any, items: Sequence[Any], **options: Any
) -> list[TaskSignature]:
    """One signature of ``task`` per item (its bound kwargs on top of the shared ones)."""
    template, created = await _create(runtime, task, items, options)
    # task_status is replaced, never changed in place: sharing it is safe
    copy = template.model_copy
    return [
        copy(
            update={
                "key": key,
                "kwargs": SignatureKwargs(bound, key),
                "success_callbacks": list(template.success_callbacks),
                "error_callbacks": list(template.error_callbacks),
            }
        )
        for key, bound in created
    ]


async def member_keys(runtime: MageflowRuntime, task: Any, count: int) -> list[str]:
    """Keys of ``count`` new plain signatures of ``task`` (swarm members), in bulk."""
    _, created = await _create(runtime, task, [{}] * count, {})
    return [key for key, _ in created]


async def _create(
    runtime: MageflowRuntime, task: Any, items: Sequence[Any], options: dict[str, Any]
) -> tuple[TaskSignature, list[tuple[str, dict[str, Any]]]]:
    """Validate every item, then store one signature each: ``(template, [(key, kwargs)])``."""
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Sequence):
        raise MageflowValidationError(
            f"items: expected a list of kwargs mappings or models, got {type(items).__name__}",
            field="items",
        )
    if "key" in options or "id" in options:
        raise MageflowValidationError(
            "key: asign_many gives every signature a new key; sign one by one to choose keys",
            field="key",
        )
    from mageflow._build import task_signature  # _build signs swarm members through here

    template = task_signature(runtime, task, **options)
    model = runtime.model_for(template.task_name, template.model_validators_path)
    shared = dict(template.kwargs)
    errors: list[tuple[int, str, str]] = []
    kwargs_of = [_item_kwargs(i, item, model, errors) for i, item in enumerate(items)]
    if errors:
        raise BulkValidationError(errors)

    shared_values = encode_signature(template.model_copy(update={"kwargs": {}}))
    created: list[tuple[str, dict[str, Any]]] = []
    batches: list[tuple[int, list[str]]] = []
    flat: list[str] = []
    count = 0
    for kw in kwargs_of:
        assert kw is not None
        key = new_key("task")
        bound = {**shared, **kw} if kw else shared
        values: list[str] = []
        for name, value in bound.items():
            values += [KWARG_PREFIX + name, jdump(value)]
        flat += [key, str(len(values)), *values]
        count += 1
        if count == BATCH:
            batches.append((count, flat))
            flat, count = [], 0
        created.append((key, bound))
    if count:
        batches.append((count, flat))
    if batches:
        await runtime.store.create_many(
            shared_values, batches, [*template.success_callbacks, *template.error_callbacks]
        )
    return template, created
