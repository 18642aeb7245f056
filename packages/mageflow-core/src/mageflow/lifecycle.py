"""Side effects of lifecycle transitions, one small handler per transition.

The state change itself happens atomically in the store (its Lua script is
compiled from ``thirdmagic.status.TRANSITIONS``). What must happen *after* a
state change in the outside world — cancelling a run in the engine, replaying
a parked run — is listed here per (status, event) cell of the same table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from thirdmagic.status import TRANSITIONS, LifecycleEvent, SignatureStatus

if TYPE_CHECKING:
    from mageflow._runtime import MageflowRuntime
    from mageflow._store.redis_store import TransitionResult

__all__ = ["HANDLERS", "Handler"]

Handler = Callable[["MageflowRuntime", str, "TransitionResult"], Awaitable[None]]

_S = SignatureStatus
_E = LifecycleEvent


async def _nothing(runtime: MageflowRuntime, key: str, result: TransitionResult) -> None:
    return None


async def _cancel_running(runtime: MageflowRuntime, key: str, result: TransitionResult) -> None:
    # Only a run that claimed the signature has an id to cancel; a run still
    # queued is skipped when it arrives because the status is interrupted.
    if result.run_id:
        await runtime.cancel_run(key, result.run_id)


async def _replay(runtime: MageflowRuntime, key: str, result: TransitionResult) -> None:
    if result.replay_input is not None and result.dispatch_id:
        await runtime.redispatch(key, result.task_name, result.replay_input, result.dispatch_id)


_SIDE_EFFECTS: Mapping[tuple[SignatureStatus, LifecycleEvent], Handler] = {
    (_S.ACTIVE, _E.INTERRUPT): _cancel_running,
    (_S.SUSPENDED, _E.INTERRUPT): _cancel_running,
    (_S.SUSPENDED, _E.RESUME): _replay,
    (_S.INTERRUPTED, _E.RESUME): _replay,
    (_S.PENDING, _E.RESUME): _replay,
    (_S.ACTIVE, _E.CANCEL): _cancel_running,
    (_S.SUSPENDED, _E.CANCEL): _cancel_running,
    (_S.FAILED, _E.RETRY): _replay,
    (_S.CANCELED, _E.RETRY): _replay,
}

HANDLERS: Mapping[tuple[SignatureStatus, LifecycleEvent], Handler] = {
    cell: _SIDE_EFFECTS.get(cell, _nothing) for cell in TRANSITIONS
}
