"""Plain-JSON views of stored signatures, for the CLI and the dashboard.

``describe`` is one signature with everything the store keeps about it
(input, result or error, run and dispatch ids, parent); ``flow_tree`` is a
signature with its members and callbacks, recursively, with container
counters; ``watch_tree`` follows a tree as it changes (``mageflow watch``, the
dashboard's live view). All of them read; none changes anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, Iterator
from typing import TYPE_CHECKING, Any

from redis import exceptions as redis_exc
from thirdmagic.errors import SignatureNotFoundError
from thirdmagic.signature import ChainSignature, Signature, SwarmSignature
from thirdmagic.status import TERMINAL_STATUSES

from mageflow import _control
from mageflow._store.keys import F

if TYPE_CHECKING:
    from mageflow._runtime import MageflowRuntime

__all__ = ["MAX_TREE_MEMBERS", "describe", "flow_tree", "watch_tree"]

log = logging.getLogger("mageflow")

MAX_TREE_MEMBERS = 200
_MAX_DEPTH = 12
_TERMINAL = frozenset(s.value for s in TERMINAL_STATUSES)
# A tree re-read this often at most while notifications pour in (a swarm's
# members finishing): one read per burst, not one per member.
_COALESCE = 0.05
# Counters of members the tree does not show change without a notification
# on a shown node's channel: a tree with hidden members is re-read this often.
_HIDDEN_MEMBERS_REREAD = 1.0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _json_or_none(raw: str | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


async def _raw(runtime: MageflowRuntime, key: str) -> dict[str, str]:
    store = runtime.store
    raw = await store._guard(lambda: store.client.hgetall(store.keys.sig(key)), key=key)
    return {_text(k): _text(v) for k, v in raw.items()}


def _summary(sig: Signature, raw: dict[str, str]) -> dict[str, Any]:
    error = sig.error.model_dump() if sig.error is not None else None
    return {
        "key": sig.key,
        "kind": getattr(sig, "kind", "task"),
        "task_name": sig.task_name,
        "status": sig.status.value,
        "last_status": sig.task_status.last_status.value if sig.task_status.last_status else None,
        "created": sig.creation_time.isoformat(),
        "task_identifiers": sig.task_identifiers,
        "run_id": raw.get(F.run),
        "error": error,
        "terminal": sig.status.value in _TERMINAL,
    }


async def describe(runtime: MageflowRuntime, key: str) -> dict[str, Any]:
    """Everything stored about ``key``; ``SignatureNotFoundError`` if nothing is."""
    raw = await _raw(runtime, key)
    if not raw:
        raise SignatureNotFoundError(key)
    sig = runtime.store.decode(key, raw)
    out = _summary(sig, raw)
    out.update(
        {
            "kwargs": dict(sig.kwargs),
            "success_callbacks": sig.success_callbacks,
            "error_callbacks": sig.error_callbacks,
            "model_validators": sig.model_validators_path,
            "input": _json_or_none(raw.get(F.input) or raw.get(F.start_value)),
            "parked_input": _json_or_none(raw.get(F.parked)),
            "result": _json_or_none(raw.get(F.result)),
            "dispatch_id": raw.get(F.dispatch),
            "parent": raw.get(F.parent),
            "ttl_ms": int(
                await runtime.store._guard(
                    lambda: runtime.store.client.pttl(runtime.store.keys.sig(key)), key=key
                )
            ),
        }
    )
    if isinstance(sig, (ChainSignature, SwarmSignature)):
        out["progress"] = (await _control.progress(runtime, key)).model_dump()
        out["members"] = await runtime.store.members(sig)
    if isinstance(sig, SwarmSignature):
        out["config"] = sig.config.model_dump()
        out["is_swarm_closed"] = sig.is_swarm_closed
    return out


async def _raw_many(runtime: MageflowRuntime, keys: list[str]) -> list[dict[str, str]]:
    store = runtime.store

    async def read() -> list[Any]:
        pipe = store.client.pipeline(transaction=False)
        for k in keys:
            pipe.hgetall(store.keys.sig(k))
        return await pipe.execute()

    if not keys:
        return []
    raws = await store._guard(read, key=None)
    return [{_text(k): _text(v) for k, v in raw.items()} for raw in raws]


async def flow_tree(runtime: MageflowRuntime, key: str) -> dict[str, Any]:
    """``key`` with its members and callbacks as nested nodes (JSON-ready).

    One pipelined read per level of the tree (plus one per container for its
    counters), so a dashboard refreshing a large swarm stays cheap.
    """
    (raw,) = await _raw_many(runtime, [key])
    if not raw:
        raise SignatureNotFoundError(key)
    return (await _nodes(runtime, [key], [raw], 0))[0]


async def _nodes(
    runtime: MageflowRuntime, keys: list[str], raws: list[dict[str, str]], depth: int
) -> list[dict[str, Any]]:
    if not keys:
        return []
    nodes: list[dict[str, Any]] = []
    children: list[str] = []
    shape: list[tuple[int, int, int, int]] = []  # per node: members, more, ok, err counts
    for key, raw in zip(keys, raws, strict=True):
        if not raw:
            nodes.append({"key": key, "kind": "missing", "status": "missing", "task_name": "?"})
            shape.append((0, 0, 0, 0))
            continue
        sig = runtime.store.decode(key, raw)
        node = _summary(sig, raw)
        nodes.append(node)
        if depth >= _MAX_DEPTH:
            node["truncated"] = True
            shape.append((0, 0, 0, 0))
            continue
        members: list[str] = []
        if isinstance(sig, (ChainSignature, SwarmSignature)):
            node["progress"] = (await _control.progress(runtime, key)).model_dump()
            members = await runtime.store.members(sig)
        shown = members[:MAX_TREE_MEMBERS]
        children += [*shown, *sig.success_callbacks, *sig.error_callbacks]
        shape.append(
            (
                len(shown),
                max(0, len(members) - MAX_TREE_MEMBERS),
                len(sig.success_callbacks),
                len(sig.error_callbacks),
            )
        )
    below = await _nodes(runtime, children, await _raw_many(runtime, children), depth + 1)
    i = 0
    for node, (n_members, more, n_ok, n_err) in zip(nodes, shape, strict=True):
        if node["kind"] == "missing":
            continue
        node["members"] = below[i : i + n_members]
        i += n_members
        node["more_members"] = more
        node["success_callbacks"] = below[i : i + n_ok]
        i += n_ok
        node["error_callbacks"] = below[i : i + n_err]
        i += n_err
    return nodes


def _tree_keys(node: dict[str, Any]) -> Iterator[str]:
    yield node["key"]
    for field in ("members", "success_callbacks", "error_callbacks"):
        for child in node.get(field, ()):
            yield from _tree_keys(child)


def _hides_members(node: dict[str, Any]) -> bool:
    if node.get("more_members"):
        return True
    return any(
        _hides_members(child)
        for field in ("members", "success_callbacks", "error_callbacks")
        for child in node.get(field, ())
    )


async def watch_tree(
    runtime: MageflowRuntime, key: str, *, interval: float = 5.0
) -> AsyncGenerator[dict[str, Any], None]:
    """``key``'s flow tree now, then again each time it may have changed.

    The store's scripts publish every status change on the signature's own
    channel (``ev:<key>``); this subscribes to the channels of every node
    the tree shows and re-reads the tree when one of them speaks. It also
    re-reads at least every ``interval`` seconds (every second while a swarm
    has members the tree does not show), for what changes without a status
    change of a shown node, and polls at that pace when the server refuses
    pub/sub. Consecutive trees may be equal; the caller compares.
    Close the iterator (``contextlib.aclosing``) to release its connection.
    """
    if interval <= 0:
        raise ValueError("interval: expected a positive number of seconds")
    store = runtime.store
    pubsub: Any = store.client.pubsub(ignore_subscribe_messages=True)
    channels: set[str] = set()
    subscribed = True
    try:
        while True:
            tree = await flow_tree(runtime, key)
            if subscribed:
                try:
                    # Subscribed before the tree is handed out, and read again
                    # after a new subscription, so no change between the read
                    # and the subscription goes unnoticed (messages that arrive
                    # while the caller holds the tree wait in the connection).
                    for _ in range(3):
                        want = {store.keys.events(k) for k in _tree_keys(tree)}
                        if want == channels:
                            break
                        if want - channels:
                            await pubsub.subscribe(*(want - channels))
                        if channels - want:
                            await pubsub.unsubscribe(*(channels - want))
                        channels = want
                        tree = await flow_tree(runtime, key)
                except (redis_exc.RedisError, OSError) as exc:
                    log.info("watch of %s: no status notifications (%s); polling", key, exc)
                    subscribed = False
            yield tree
            wait = min(interval, _HIDDEN_MEMBERS_REREAD) if _hides_members(tree) else interval
            if subscribed:
                try:
                    await _next_message(pubsub, wait)
                    continue
                except (redis_exc.RedisError, OSError) as exc:
                    log.info("watch of %s: no status notifications (%s); polling", key, exc)
                    subscribed = False
            await asyncio.sleep(wait)
    finally:
        with contextlib.suppress(Exception):
            await pubsub.aclose()


async def _next_message(pubsub: Any, wait: float) -> None:
    """Until a notification arrives (plus a short burst) or ``wait`` seconds pass."""
    until = time.monotonic() + wait
    while (left := until - time.monotonic()) > 0:
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
        if msg is not None and msg.get("type") == "message":
            await asyncio.sleep(_COALESCE)
            # drop what else arrived meanwhile: one read covers them all
            while await pubsub.get_message(ignore_subscribe_messages=True, timeout=0) is not None:
                pass
            return
