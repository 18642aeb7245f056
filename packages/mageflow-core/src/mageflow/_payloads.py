"""Payloads by reference: what is too big for the engine stays in Redis.

A run input or a result whose JSON is longer than
``MageflowConfig.payload_threshold`` is stored in the signature's ``blob:``
hash (``_store/keys.py``) and the engine carries a small reference in its
place (``{"__mageflow_ref__": {"kind": "blob", "key": ..., "f": "in"|"out"}}``).
A swarm's result list is never built in one piece: its completion hands its
callbacks ``{"__mageflow_ref__": {"kind": "swarm", "key": ..., "n": ...}}``.

The worker resolves references after BEGIN and before validation, so task
bodies and input models never see them. A reference stands either for a
whole input (the error callback's merged kwargs may sit beside it: they win)
or for one field (a return value injected into a callback); a resolved value
may hold references again (a member's big result in a swarm's list, a nested
swarm), which are resolved in turn.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator
from thirdmagic.errors import StoreError
from thirdmagic.message import resolve_return_field

from mageflow._store.codec import REF, jdump
from mageflow._store.keys import BLOB

if TYPE_CHECKING:
    from mageflow._store.redis_store import RedisStore

__all__ = ["SwarmResults", "externalize", "resolve", "resolve_input", "result_payload"]

_DEPTH = 32


class SwarmResults(BaseModel):
    """A swarm's member results, read on demand instead of as one list.

    Declare a callback's return-value field as ``ReturnValue[SwarmResults]``
    and the worker hands it over unresolved: ``async for item in
    results.aiter()`` reads ``MageflowConfig.results_chunk`` results per round
    trip, in the order members were added (``None`` for a failed member), so
    the worker holds one chunk at a time whatever the swarm's size.
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    swarm_key: str = Field(alias="key")  # codec.REF.key
    count: int = Field(alias="n")  # codec.REF.count

    @model_validator(mode="before")
    @classmethod
    def _unwrap(cls, data: Any) -> Any:
        # what the worker hands over is the reference itself
        if isinstance(data, dict) and isinstance(data.get(REF.tag), dict):
            return data[REF.tag]
        return data

    async def aiter(self, chunk_size: int | None = None) -> AsyncIterator[Any]:
        """Every member result in order, ``chunk_size`` per round trip."""
        from mageflow._api import get_runtime

        store = get_runtime().store
        step = chunk_size or store.config.results_chunk
        for start in range(0, self.count, step):
            stop = min(start + step, self.count)
            for item in await _swarm_chunk(store, self.swarm_key, start, stop, 0):
                yield item

    async def aload(self) -> list[Any]:
        """The whole list (what ``ReturnValue[list[T]]`` receives)."""
        return [item async for item in self.aiter()]


def _ref_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        ref = value.get(REF.tag)
        if isinstance(ref, dict):
            kind = ref.get(REF.kind)
            return kind if isinstance(kind, str) else ""
    return None


def _blob_ref(key: str, field: str) -> dict[str, Any]:
    return {REF.tag: {REF.kind: REF.blob, REF.key: key, REF.field: field}}


async def externalize(store: RedisStore, key: str, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` as it should travel as a run input: itself, or a reference when too big."""
    if _ref_kind(data) is not None:
        return data
    encoded = jdump(data)
    if len(encoded) <= store.config.payload_threshold:
        return data
    await store.put_blob(key, BLOB.input, encoded)
    return _blob_ref(key, BLOB.input)


async def result_payload(store: RedisStore, key: str, plain: Any) -> tuple[Any, bool]:
    """What FINISH records for a result: ``(value or reference, whether a reference)``."""
    if _ref_kind(plain) is not None:
        return plain, False  # a swarm's or a task's reference passed on as is
    if isinstance(plain, (int, float, bool)) or plain is None:
        return plain, False
    encoded = jdump(plain)
    if len(encoded) <= store.config.payload_threshold:
        return plain, False
    await store.put_blob(key, BLOB.result, encoded)
    return _blob_ref(key, BLOB.result), True


async def _load(store: RedisStore, ref: Mapping[str, Any], depth: int) -> Any:
    if depth > _DEPTH:
        raise StoreError("payload references nest too deeply (a reference cycle?)")
    kind = ref.get(REF.kind)
    key = str(ref.get(REF.key, ""))
    if kind == REF.blob:
        field = str(ref.get(REF.field, BLOB.input))
        raw = await store.get_blob(key, field)
        if raw is None:
            raise StoreError(
                f"the payload of signature {key!r} stored by reference ({field!r}) is gone: "
                "the signature was removed or its TTL expired",
                key=key,
            )
        return await _resolve_value(store, json.loads(raw), depth + 1)
    if kind == REF.swarm:
        count = int(ref.get(REF.count, 0))
        step = store.config.results_chunk
        out: list[Any] = []
        for start in range(0, count, step):
            out += await _swarm_chunk(store, key, start, min(start + step, count), depth + 1)
        return out
    raise StoreError(f"unknown payload reference {kind!r} for signature {key!r}", key=key)


async def _swarm_chunk(store: RedisStore, key: str, start: int, stop: int, depth: int) -> list[Any]:
    raws = await store.swarm_results(key, start, stop)
    items = [None if raw is None else json.loads(raw) for raw in raws]
    if any(_ref_kind(item) is not None for item in items):
        items = [await _resolve_value(store, item, depth) for item in items]
    return items


async def _resolve_value(store: RedisStore, value: Any, depth: int) -> Any:
    if _ref_kind(value) is None:
        return value
    loaded = await _load(store, value[REF.tag], depth)
    rest = {k: v for k, v in value.items() if k != REF.tag}
    if rest and isinstance(loaded, dict):
        return {**loaded, **rest}  # kwargs merged beside a whole-input reference win
    return loaded


async def resolve(store: RedisStore, value: Any) -> Any:
    """A stored value (a signature's ``res``, say) with its reference, if any, resolved."""
    return await _resolve_value(store, value, 0)


def _streams(model: type[BaseModel] | None) -> str | None:
    """The return-value field that asks for :class:`SwarmResults` (left unresolved)."""
    if model is None:
        return None
    name = resolve_return_field(model)
    info = model.model_fields.get(name)
    if info is None:
        return None
    annotation = info.annotation
    if annotation is SwarmResults or SwarmResults in get_args(annotation):
        return name
    return None


async def resolve_input(
    store: RedisStore, payload: dict[str, Any], model: type[BaseModel] | None
) -> dict[str, Any]:
    """A run's input with every reference replaced by its value (see module docstring)."""
    data = payload
    if _ref_kind(data) is not None:
        loaded = await _resolve_value(store, data, 0)
        if not isinstance(loaded, dict):
            raise StoreError("a run input stored by reference is not a JSON object")
        data = loaded
    fields = [(n, v) for n, v in data.items() if _ref_kind(v) is not None]
    if not fields:
        return data
    keep = _streams(model)
    data = dict(data)
    for name, value in fields:
        if name == keep and _ref_kind(value) == REF.swarm:
            continue
        data[name] = await _resolve_value(store, value, 0)
    return data
