"""The reconciler: signatures whose run went quiet are settled by what the engine says.

A sweep takes the claims (pending index) and begun runs (active index) not
heard of for ``MageflowConfig.reconcile_after``, asks the engine about all
their runs in one ``run_status`` call, and settles each by :func:`decide`
(the table is in docs/lifecycle.md). Every settlement is one store script
that checks the signature is still where the sweep saw it, so several
workers reconciling at once settle each signature once. A sweep costs in
proportion to the items due, never to the signatures already settled:
finished runs leave the indexes as they finish.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from thirdmagic.errors import MageflowError
from thirdmagic.outcome import ErrorDetails

from mageflow._crash import crash_point
from mageflow._store.codec import KIND
from mageflow._store.redis_store import DueItem
from mageflow.engine import RunState, RunStatusRequest

if TYPE_CHECKING:
    from mageflow._runtime import MageflowRuntime

__all__ = ["Action", "Decision", "ReconcileReport", "decide", "reconcile"]

log = logging.getLogger("mageflow")


class Action(StrEnum):
    LEAVE = "leave"
    RESEND = "resend"
    FAIL = "fail"
    CANCEL = "cancel"
    DOUBT = "doubt"
    """a run the engine named but does not know: its read side may lag, so a
    begun run is left for ``reconcile_unknown_window``, then fails; a claim
    is re-sent (bounded) and given up on only after that window too"""
    RESTART = "restart"
    """a claimed chain or swarm: start it again (idempotent), no engine run of its own"""


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str = ""


@dataclass(slots=True)
class ReconcileReport:
    """What one sweep did (``MageflowRuntime.reconcile``)."""

    examined: int = 0
    left: int = 0
    resent: int = 0
    failed: int = 0
    canceled: int = 0
    restarted: int = 0
    stale: int = 0
    """settled meanwhile by someone else (a run, a user, another reconciler)"""
    engine_calls: int = 0


_ERROR_TYPE = "mageflow.reconciler"
"""``ErrorDetails.type`` of a failure or cancel the reconciler recorded (the
message says what the engine reported)."""

_QUIET = frozenset({RunState.QUEUED, RunState.RUNNING})


def decide(item: DueItem, state: RunState | None) -> Decision:
    """The reconciliation table: what to do with ``item`` given the engine's ``state``.

    ``state`` is None when the engine was not asked (no run id) or could not
    answer.
    """
    if item.claimed and item.entry is not None and item.entry.kind != KIND.task:
        return Decision(Action.RESTART)
    run = item.run_id
    if item.claimed:
        if not run:
            # the send never returned a run id: lost before or at the engine
            return Decision(Action.RESEND, "its dispatch never reached the engine")
        if state is None or state in _QUIET:
            return Decision(Action.LEAVE)
        if state is RunState.UNKNOWN:
            return Decision(Action.DOUBT, f"run {run} is unknown to the engine")
        if item.status != "pending":
            # suspended/interrupted: the run must arrive to be parked or kept
            return Decision(Action.RESEND, f"run {run} is {state} in the engine")
        if state is RunState.CANCELLED:
            return Decision(Action.CANCEL, f"run {run} was cancelled in the engine")
        if state is RunState.FAILED:
            return Decision(
                Action.FAIL, f"run {run} failed in the engine before it reached MageFlow"
            )
        if state is RunState.TIMED_OUT:
            return Decision(
                Action.FAIL, f"run {run} timed out in the engine before it reached MageFlow"
            )
        # unknown, or completed without ever starting the signature (skipped)
        return Decision(Action.RESEND, f"run {run} is {state} in the engine")
    if state is None or state in _QUIET:
        return Decision(Action.LEAVE)
    if state is RunState.CANCELLED:
        return Decision(Action.CANCEL, f"run {run} was cancelled in the engine")
    if state is RunState.FAILED:
        return Decision(
            Action.FAIL,
            f"run {run} failed in the engine (its worker was lost, or the engine "
            "ended it) and MageFlow never recorded an outcome",
        )
    if state is RunState.TIMED_OUT:
        return Decision(Action.FAIL, f"run {run} timed out in the engine")
    if state is RunState.COMPLETED:
        return Decision(
            Action.FAIL, f"run {run} completed in the engine but its outcome never reached MageFlow"
        )
    # A begun run is never re-sent: its body may have run already. An engine
    # may not list a run it just started (Hatchet's REST reads tables written
    # asynchronously), so the signature fails only when the engine has not
    # known the run for a whole reconcile_unknown_window.
    return Decision(Action.DOUBT, f"run {run} began but the engine does not know it")


async def reconcile(runtime: MageflowRuntime, older_than_ms: int, limit: int) -> ReconcileReport:
    store = runtime.store
    report = ReconcileReport()
    items = await store.due_for_reconcile(older_than_ms, limit)
    report.examined = len(items)
    if not items:
        return report
    asked = sorted({i.run_id for i in items if i.run_id})
    states: dict[str, RunState] | None = {}
    if asked:
        try:
            report.engine_calls += 1
            result = await runtime._manager().run_status(RunStatusRequest(run_ids=tuple(asked)))
            states = {r: result.state(r) for r in asked}
        except Exception as exc:  # an adapter's error of any kind: ask again next sweep
            log.warning("reconciler: the engine could not report run states: %s", exc)
            states = None
    for item in items:
        state = states.get(item.run_id) if states is not None and item.run_id else None
        decision = decide(item, state)
        try:
            if item.in_doubt and state in _QUIET:
                # the engine answers for the run after all: its doubt ends
                await _known(runtime, item)
            await _apply(runtime, item, decision, report)
        except MageflowError:
            log.exception("reconciler: settling %s (%s) failed", item.key, decision.action)
    return report


async def _known(runtime: MageflowRuntime, item: DueItem) -> None:
    dispatch_id = item.entry.dispatch_id if item.entry is not None else ""
    await runtime.store.settle(
        item.key,
        action="known",
        dispatch_id=dispatch_id,
        run_id="" if item.claimed else item.run_id,
    )


async def _apply(
    runtime: MageflowRuntime,
    item: DueItem,
    decision: Decision,
    report: ReconcileReport,
) -> None:
    store = runtime.store
    config = store.config
    max_resends = config.reconcile_max_resends
    window = config.reconcile_unknown_window
    action = decision.action
    if action is Action.LEAVE:
        report.left += 1
        return
    if action is Action.RESTART:
        assert item.entry is not None
        log.warning("reconciler: starting container %s again (its start was lost)", item.key)
        report.restarted += 1
        await runtime.dispatch_outbox([item.entry])
        return
    dispatch_id = item.entry.dispatch_id if item.entry is not None else ""
    run_id = "" if item.claimed else item.run_id
    if action is Action.DOUBT and not item.claimed:
        lost = Decision(
            Action.FAIL,
            f"{decision.reason} (not for {_span(window)}, reconcile_unknown_window); "
            "it is not re-sent because its body may have run",
        )
        settled = await store.settle(
            item.key,
            action="doubt",
            run_id=run_id,
            error=_error(item, lost),
            window_ms=_ms(window),
        )
        if settled.code == "wait":
            log.warning(
                "reconciler: %s: %s (for %.1f s of %s; looking again)",
                item.key,
                decision.reason,
                settled.waited_ms / 1000,
                _span(window),
            )
            report.left += 1
        elif settled.code == "ok":
            report.failed += 1
            log.warning("reconciler: %s failed: %s", item.key, lost.reason)
            crash_point("reconcile:settled", item.key)
            await runtime.dispatch_outbox(settled.outbox)
        else:
            report.stale += 1
        return
    if action in (Action.RESEND, Action.DOUBT):
        settled = await store.settle(
            item.key,
            action="doubt" if action is Action.DOUBT else "resend",
            dispatch_id=dispatch_id,
            max_resends=max_resends,
            window_ms=_ms(window),
        )
        if settled.code == "ok":
            assert item.entry is not None
            log.warning(
                "reconciler: re-sending %s (re-send %d of at most %d): %s",
                item.key,
                item.resends + 1,
                max_resends,
                decision.reason,
            )
            report.resent += 1
            crash_point("reconcile:settled", item.key)
            await runtime.resend(item.entry, item.options)
            return
        if settled.code == "wait":
            log.warning(
                "reconciler: %s: %s after %d re-send(s) (for %.1f s of %s); not given up on yet",
                item.key,
                decision.reason,
                max_resends,
                settled.waited_ms / 1000,
                _span(window),
            )
            report.left += 1
            return
        if settled.code != "exhausted":
            report.stale += 1
            return
        action = Action.FAIL
        decision = Decision(
            Action.FAIL,
            f"the engine never ran signature {item.key!r} after {max_resends} re-send(s) "
            f"({decision.reason}); is a MageFlow worker registered for its task?",
        )
    settled = await store.settle(
        item.key,
        action="cancel" if action is Action.CANCEL else "fail",
        dispatch_id=dispatch_id,
        run_id=run_id,
        error=_error(item, decision),
    )
    if settled.code != "ok":
        report.stale += 1
        return
    if action is Action.CANCEL:
        report.canceled += 1
        log.warning("reconciler: %s canceled: %s", item.key, decision.reason)
    else:
        report.failed += 1
        log.warning("reconciler: %s failed: %s", item.key, decision.reason)
    crash_point("reconcile:settled", item.key)
    await runtime.dispatch_outbox(settled.outbox)


def _error(item: DueItem, decision: Decision) -> dict[str, Any]:
    """What the store keeps as the failure (or cancel) the reconciler records."""
    return ErrorDetails(
        type=_ERROR_TYPE, message=decision.reason, signature_key=item.key
    ).model_dump()


def _ms(span: timedelta) -> int:
    return max(0, int(span.total_seconds() * 1000))


def _span(span: timedelta) -> str:
    """A window for messages: minutes when long, else seconds."""
    seconds = span.total_seconds()
    return f"{seconds / 60:g} min" if seconds >= 120 else f"{seconds:g} s"
