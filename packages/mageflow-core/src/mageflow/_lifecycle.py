"""Lifecycle events (suspend, resume, interrupt, cancel, retry) and their side effects.

The state change itself happens atomically in the store. What must happen
*after* a state change in the outside world — cancelling a run in the engine,
replaying a parked run, starting what a resumed container owes — goes through
:class:`Effects`, the whole list of what a lifecycle event may cause outside
Redis. The runtime implements it; this module never calls back into the
runtime for anything else.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from thirdmagic.errors import InvalidTransitionError, SignatureNotFoundError
from thirdmagic.status import TRANSITIONS, LifecycleEvent, SignatureStatus, TaskStatus

from mageflow import _locks
from mageflow._store.redis_store import OutboxEntry, RedisStore, TransitionResult

__all__ = ["HANDLERS", "REPEAT_HANDLERS", "Effects", "Handler", "apply"]


class Effects(Protocol):
    """What a lifecycle event may do outside the store."""

    async def cancel_run(self, key: str, run_id: str) -> None:
        """Ask the engine to stop run ``run_id`` of signature ``key``."""

    async def redispatch(
        self,
        key: str,
        task_name: str,
        input_data: dict[str, Any],
        dispatch_id: str,
        options: dict[str, Any],
    ) -> None:
        """Send a parked run again, under the dispatch id the store claimed for it,
        with the run options the caller first gave."""

    async def dispatch_outbox(self, outbox: Sequence[OutboxEntry]) -> None:
        """Send the dispatches a script claimed (a resumed container's next steps)."""


Handler = Callable[[Effects, str, TransitionResult], Awaitable[None]]

_S = SignatureStatus
_E = LifecycleEvent


async def _nothing(effects: Effects, key: str, result: TransitionResult) -> None:
    return None


async def _cancel_running(effects: Effects, key: str, result: TransitionResult) -> None:
    # The store hands out the run to stop: a begun run, or, on cancel, a
    # claim's queued engine run (an interrupted one's queued run must arrive:
    # it is skipped and keeps the input for resume).
    if result.run_id:
        await effects.cancel_run(key, result.run_id)


async def _replay(effects: Effects, key: str, result: TransitionResult) -> None:
    if result.replay_input is not None and result.dispatch_id:
        await effects.redispatch(
            key, result.task_name, result.replay_input, result.dispatch_id, result.options
        )


_SIDE_EFFECTS: Mapping[tuple[SignatureStatus, LifecycleEvent], Handler] = {
    (_S.ACTIVE, _E.INTERRUPT): _cancel_running,
    (_S.SUSPENDED, _E.INTERRUPT): _cancel_running,
    (_S.SUSPENDED, _E.RESUME): _replay,
    (_S.INTERRUPTED, _E.RESUME): _replay,
    (_S.PENDING, _E.RESUME): _replay,
    (_S.PENDING, _E.CANCEL): _cancel_running,
    (_S.ACTIVE, _E.CANCEL): _cancel_running,
    (_S.SUSPENDED, _E.CANCEL): _cancel_running,
    (_S.INTERRUPTED, _E.CANCEL): _cancel_running,
    (_S.FAILED, _E.RETRY): _replay,
    (_S.CANCELED, _E.RETRY): _replay,
}

HANDLERS: Mapping[tuple[SignatureStatus, LifecycleEvent], Handler] = {
    cell: _SIDE_EFFECTS.get(cell, _nothing) for cell in TRANSITIONS
}
"""Side effect of each cell of ``TRANSITIONS`` that changed the status."""

REPEAT_HANDLERS: Mapping[LifecycleEvent, Handler] = {
    # Repeating an interrupt retries a cancel that may have been lost.
    _E.INTERRUPT: _cancel_running,
}
"""Side effect of an event that left the status as it was (a repeat)."""


def _new_dispatch_id() -> str:
    return uuid.uuid4().hex


async def apply(store: RedisStore, effects: Effects, key: str, event: LifecycleEvent) -> TaskStatus:
    """Apply ``event`` to ``key`` and, for a container, to its members."""
    status, kind = await _apply_one(store, effects, key, event)
    if kind in ("chain", "swarm"):
        sig = await store.load(key)
        if sig is None:
            return status
        # Members first, then the container moves on: on resume a swarm
        # refills its free slots only once its members can run again.
        for member in await store.members(sig):
            try:
                await apply(store, effects, member, event)
            except (InvalidTransitionError, SignatureNotFoundError):
                continue  # finished or removed members keep their state
        if event is LifecycleEvent.RESUME:
            await _kick(store, effects, key)
    return status


async def _kick(store: RedisStore, effects: Effects, key: str) -> None:
    _, outbox = await _locks.waiting_for_lock(
        store.config,
        key,
        lambda: store.advance(
            key, token=_locks.token(key), action="kick", dispatch_prefix=_new_dispatch_id()
        ),
    )
    await effects.dispatch_outbox(outbox)


async def _apply_one(
    store: RedisStore, effects: Effects, key: str, event: LifecycleEvent
) -> tuple[TaskStatus, str]:
    result = await _locks.waiting_for_lock(
        store.config,
        key,
        lambda: store.transition(key, event, _locks.token(key), _new_dispatch_id()),
    )
    if result.changed and result.previous is not None:
        await HANDLERS[(result.previous, event)](effects, key, result)
    elif not result.changed and result.run_id and event in REPEAT_HANDLERS:
        await REPEAT_HANDLERS[event](effects, key, result)
    return TaskStatus(status=result.status, last_status=result.previous), result.kind
