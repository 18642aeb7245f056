"""Steering finished or running work: cancel, retry, clone, progress.

Each state change is one store script (``TRANSITION`` with the ``cancel`` or
``retry`` event), so a cancel racing a completion has exactly one outcome:
whichever script runs first wins, the other is refused and changes nothing.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from thirdmagic.errors import (
    InvalidTransitionError,
    MageflowValidationError,
    SignatureNotFoundError,
)
from thirdmagic.outcome import ContainerProgress, ErrorDetails, resolve_error_field
from thirdmagic.signature import ChainSignature, Signature, SwarmSignature, TaskSignature
from thirdmagic.status import LifecycleEvent, TaskStatus

from mageflow._store.keys import F

if TYPE_CHECKING:
    from mageflow._runtime import MageflowRuntime

__all__ = ["cancel", "clone", "progress", "retry"]

_MAX_CLONE_DEPTH = 32


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _fields(runtime: MageflowRuntime, key: str, *names: str) -> list[str | None]:
    store = runtime.store
    raw = await store._guard(lambda: store.client.hmget(store.keys.sig(key), list(names)), key=key)
    return [None if v is None else _text(v) for v in raw]


async def cancel(
    runtime: MageflowRuntime, key: str, *, error_callbacks: bool = False
) -> TaskStatus:
    """Cancel ``key`` for good; a chain or swarm cancels its members too.

    A member of a container that is still running is refused by the store
    (``InvalidTransitionError``): cancelling it alone would leave its
    container waiting for ever; cancel the container.
    """
    if not isinstance(key, str) or not key:
        raise MageflowValidationError(f"key: expected a signature key, got {key!r}", field="key")
    result = await runtime.apply(key, LifecycleEvent.CANCEL)
    if error_callbacks:
        await _fire_error_callbacks(runtime, key)
    return result


async def _fire_error_callbacks(runtime: MageflowRuntime, key: str) -> None:
    # A callback is started through the normal dispatch claim: if this runs
    # twice, the earlier dispatch is stale when it arrives and skips itself,
    # and a callback that already started or finished is left alone.
    sig = await runtime.load(key)
    if sig is None or not sig.error_callbacks:
        return
    field = F.start_value if isinstance(sig, (ChainSignature, SwarmSignature)) else F.input
    (raw_input,) = await _fields(runtime, key, field)
    original = json.loads(raw_input) if raw_input else {}
    details = ErrorDetails(
        type="Canceled", message=f"signature {key!r} was canceled", signature_key=key
    ).model_dump()
    for cb_key in sig.error_callbacks:
        cb = await runtime.load(cb_key)
        if cb is None or cb.status.value != "pending":
            continue
        model = runtime.model_for(cb.task_name, cb.model_validators_path)
        data = dict(original if isinstance(original, dict) else {})
        marked = resolve_error_field(model)
        if marked is not None:
            data[marked] = details
        try:
            await runtime.run(cb, data, {})
        except InvalidTransitionError:
            continue


async def retry(runtime: MageflowRuntime, key: str) -> TaskStatus:
    """A new attempt of a failed or canceled task signature with its stored input."""
    if not isinstance(key, str) or not key:
        raise MageflowValidationError(f"key: expected a signature key, got {key!r}", field="key")
    return await runtime.apply(key, LifecycleEvent.RETRY)


async def clone(
    runtime: MageflowRuntime, sig: Signature, changes: dict[str, Any], depth: int = 0
) -> Signature:
    """A fresh copy of ``sig`` (new key, status pending) with fresh copies of its
    callbacks, and for a chain or swarm of its members.

    Callbacks are copied because a callback fires once: the original's have
    usually fired already and would never fire for the copy.
    """
    if depth > _MAX_CLONE_DEPTH:
        raise MageflowValidationError(
            f"clone: signature {sig.key!r} nests callbacks deeper than {_MAX_CLONE_DEPTH}",
            key=sig.key,
        )
    allowed = {"kwargs", "task_identifiers", "key", "success_callbacks", "error_callbacks"}
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise MageflowValidationError(
            f"clone: cannot change {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}",
            field=unknown[0],
        )

    async def copies(keys: list[str]) -> list[str]:
        out: list[str] = []
        for k in keys:
            found = await runtime.load(k)
            if found is None:
                raise SignatureNotFoundError(
                    k, f"signature {sig.key!r} refers to {k!r}, which is not stored"
                )
            out.append((await clone(runtime, found, {}, depth + 1)).key)
        return out

    success = changes.get("success_callbacks")
    errors = changes.get("error_callbacks")
    ok = await copies(sig.success_callbacks) if success is None else success
    err = await copies(sig.error_callbacks) if errors is None else errors
    kwargs = dict(changes.get("kwargs", sig.kwargs))
    idents = dict(changes.get("task_identifiers", sig.task_identifiers))
    extra: dict[str, Any] = {"key": changes["key"]} if "key" in changes else {}
    if isinstance(sig, ChainSignature):
        steps = await copies(list(sig.tasks))
        return await runtime.chain(
            steps,
            sig.task_name,
            ok or None,
            err or None,
            kwargs=kwargs,
            task_identifiers=idents,
            **extra,
        )
    if isinstance(sig, SwarmSignature):
        members = await copies(await runtime.store.members(sig))
        return await runtime.swarm(
            members or None,
            ok,
            err,
            sig.config,
            sig.is_swarm_closed,
            name=sig.task_name,
            kwargs=kwargs,
            task_identifiers=idents,
            **extra,
        )
    assert isinstance(sig, TaskSignature)
    return await runtime.sign(
        sig.task_name,
        kwargs=kwargs,
        model_validators=sig.model_validators_path,
        success_callbacks=ok,
        error_callbacks=err,
        task_identifiers=idents,
        **extra,
    )


async def progress(runtime: MageflowRuntime, key: str) -> ContainerProgress:
    """Counters of a chain or swarm (a task counts as a container of one)."""
    store = runtime.store
    sig_key = store.keys.sig(key)

    async def read() -> list[Any]:
        pipe = store.client.pipeline(transaction=False)
        pipe.hmget(
            sig_key,
            [
                F.status,
                F.kind,
                F.admitted,
                F.running,
                F.succeeded,
                F.failed,
                F.skipped,
                F.chain_index,
                F.chain_tasks,
                F.started,
            ],
        )
        pipe.llen(store.keys.swarm_queue(key))
        pipe.scard(store.keys.swarm_busy(key))
        return await pipe.execute()

    fields, queued, busy = await store._guard(read, key=key)
    status, kind, n, run, ok, bad, skp, ci, tasks, started = (
        None if v is None else _text(v) for v in fields
    )
    if status is None:
        raise SignatureNotFoundError(key)
    kind = kind or "task"
    if kind == "swarm":
        return ContainerProgress(
            key=key,
            kind=kind,
            status=status,
            admitted=int(n or 0),
            # claimed members whose run has not begun (sent ahead of free
            # places, SwarmConfig.prefetch) are still queued, in the engine
            queued=int(queued or 0) + max(0, int(run or 0) - int(busy or 0)),
            running=min(int(run or 0), int(busy or 0)),
            done=int(ok or 0),
            failed=int(bad or 0),
            skipped=int(skp or 0),
        )
    if kind == "chain":
        steps: list[str] = json.loads(tasks or "[]")

        async def statuses() -> list[Any]:
            pipe = store.client.pipeline(transaction=False)
            for step in steps:
                pipe.hget(store.keys.sig(step), F.status)
            return await pipe.execute()

        found = [None if v is None else _text(v) for v in await store._guard(statuses, key=key)]
        return ContainerProgress(
            key=key,
            kind=kind,
            status=status,
            admitted=len(steps),
            queued=sum(1 for s in found if s in ("pending", None)),
            running=sum(1 for s in found if s in ("active", "suspended", "interrupted")),
            done=sum(1 for s in found if s == "done"),
            failed=sum(1 for s in found if s in ("failed", "canceled")),
            skipped=sum(1 for s in found if s == "skipped"),
            current_step=int(ci or 0) if started else None,
        )
    return ContainerProgress(
        key=key,
        kind=kind,
        status=status,
        admitted=1,
        queued=int(status == "pending"),
        running=int(status in ("active", "suspended", "interrupted")),
        done=int(status == "done"),
        failed=int(status in ("failed", "canceled")),
        skipped=int(status == "skipped"),
    )
