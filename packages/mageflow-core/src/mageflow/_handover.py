"""Storing signatures that were built elsewhere: ``submit`` and unsaved members.

A :class:`thirdmagic.FlowSpec` (or a signature object with the signatures
attached to it) may come from a service that has only ``thirdmagic``. Storing
it is all or nothing: the signatures are created children first, and if any
of them is refused, those already created by this call are removed again
before the error propagates, so a refused hand-over leaves nothing behind.
The same compensation covers members signed for a chain that is then
refused, and unsaved chains or swarms added to a swarm that refuses them
(every other swarm member is stored by the admitting script, see
``_admission``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from thirdmagic.errors import MageflowError, MageflowValidationError
from thirdmagic.handover import FlowSpec, references
from thirdmagic.signature import ChainSignature, Signature, SwarmSignature

from mageflow import _build, _bulk
from mageflow._intake import check_new

if TYPE_CHECKING:
    from mageflow._runtime import MageflowRuntime

__all__ = ["discard", "member_keys", "submit"]

log = logging.getLogger("mageflow")


def _order(spec: FlowSpec) -> list[Signature]:
    """Signatures of ``spec``, each after every signature of the spec it refers to."""
    by_key: dict[str, Signature] = {s.key: s for s in spec.signatures}
    ordered: list[Signature] = []
    state: dict[str, int] = {}  # 1 visiting, 2 placed

    def visit(key: str, path: str) -> None:
        if state.get(key) == 2:
            return
        if state.get(key) == 1:
            raise MageflowValidationError(
                f"signatures: {key!r} refers back to itself ({path})", field="signatures"
            )
        state[key] = 1
        sig = by_key[key]
        for ref in [*references(sig), *spec.swarm_members.get(key, [])]:
            if ref in by_key:
                visit(ref, f"{path} -> {ref}")
        state[key] = 2
        ordered.append(sig)

    for sig in spec.signatures:
        visit(sig.key, sig.key)
    return ordered


async def discard(runtime: MageflowRuntime, keys: Sequence[str]) -> None:
    """Remove signatures this call created, newest first; never raises."""
    for key in reversed(keys):
        try:
            await runtime.store.remove(
                key, with_error=False, with_success=False, token="", held=None
            )
        except MageflowError:
            log.exception("could not remove %s after a refused operation", key)


async def _create(runtime: MageflowRuntime, sig: Signature, members: list[str]) -> None:
    check_new(sig)
    required = [*sig.success_callbacks, *sig.error_callbacks]
    if isinstance(sig, ChainSignature):
        if len(sig.tasks) < 2:
            raise MageflowValidationError(
                f"tasks: chain {sig.key!r} needs two or more tasks", field="tasks", key=sig.key
            )
        await runtime.store.create(sig, required, members=sig.tasks)
        return
    if isinstance(sig, SwarmSignature):
        closed = sig.is_swarm_closed
        stored = sig.model_copy(update={"is_swarm_closed": False})
        await runtime.store.create(stored, required)
        if members:
            await runtime.swarm_add(sig, members, None)
        if closed:
            await runtime.swarm_close(sig.key)
        return
    await runtime.store.create(sig, required)


async def submit(
    runtime: MageflowRuntime, spec: Any, stored_by_call: list[str] | None = None
) -> Signature:
    """Store every signature of ``spec`` (all or nothing) and return its root.

    The keys it stored (not those it found already stored) are appended to
    ``stored_by_call``: only those may be removed if the caller is refused.
    """
    parsed = FlowSpec.parse(spec)
    ordered = _order(parsed)
    found = await runtime.store.load_many([s.key for s in ordered])
    # A signature object that was attached after it had been stored (asign,
    # then used as a callback) is referred to, not created again. The root,
    # or a different signature under a stored key, is refused by the store.
    already = {
        s.key
        for s, there in zip(ordered, found, strict=True)
        if there is not None
        and s.key != parsed.root
        and getattr(there, "kind", None) == getattr(s, "kind", None)
        and there.task_name == s.task_name
    }
    created: list[str] = []
    try:
        for sig in ordered:
            if sig.key in already:
                continue
            members = parsed.swarm_members.get(sig.key, [])
            if isinstance(sig, SwarmSignature) and not members:
                members = list(sig.tasks)
            await _create(runtime, sig, members)
            created.append(sig.key)
    except BaseException:
        await discard(runtime, created)
        raise
    if stored_by_call is not None:
        stored_by_call.extend(created)
    return parsed.root_signature()


async def member_keys(runtime: MageflowRuntime, tasks: Any) -> tuple[list[str], list[str]]:
    """Keys for members given as signatures (stored or not), keys, task names or task objects.

    A string that names a stored signature is taken as its key; any other
    string is a task name and is signed here; an unsaved signature object is
    stored with what is attached to it. Returns the keys and the keys created
    by this call (for :func:`discard` if the caller's operation is refused).
    """
    items = (
        [tasks]
        if isinstance(tasks, (str, Signature)) or not isinstance(tasks, (list, tuple))
        else list(tasks)
    )
    # once per distinct key or name: a chain of 1 000 "step" is one HGETALL
    probe = list(
        dict.fromkeys(
            t if isinstance(t, str) else t.key for t in items if isinstance(t, (str, Signature))
        )
    )
    stored: set[str] = set()
    if probe:
        found = await runtime.store.load_many(probe)
        stored = {k for k, sig in zip(probe, found, strict=True) if sig is not None}
    keys: list[str | None] = []
    created: list[str] = []
    # task names and task objects are signed in bulk, grouped by task (issue 10)
    unsigned: dict[str, tuple[Any, list[int]]] = {}
    try:
        for i, item in enumerate(items):
            if isinstance(item, Signature) and item.key in stored:
                keys.append(item.key)
            elif isinstance(item, Signature):
                # a stored callback attached to it is referred to, never removed
                await submit(runtime, FlowSpec.of(item), created)
                keys.append(item.key)
                stored.add(item.key)
            elif isinstance(item, str) and item in stored:
                keys.append(item)
            else:
                keys.append(None)
                name, _, _ = _build.resolve_task(runtime, item)
                unsigned.setdefault(name, (item, []))[1].append(i)
        for task, positions in unsigned.values():
            new = await _bulk.member_keys(runtime, task, len(positions))
            created.extend(new)
            for i, key in zip(positions, new, strict=True):
                keys[i] = key
    except BaseException:
        await discard(runtime, created)
        raise
    return [k for k in keys if k is not None], created
