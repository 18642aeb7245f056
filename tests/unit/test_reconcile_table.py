"""The reconciler's decision for each MageFlow state and engine answer (no store)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from mageflow import MageflowConfig
from mageflow._reconcile import Action, decide
from mageflow._store.codec import OutboxEntry
from mageflow._store.redis_store import DueItem
from mageflow.engine import RunState
from pydantic import ValidationError


def claim(run_id: str = "run-1", status: str = "pending", kind: str = "task") -> DueItem:
    entry = OutboxEntry(
        key="k", dispatch_id="d", task_name="t", model_path=None, kwargs={}, kind=kind
    )
    return DueItem(key="k", claimed=True, status=status, run_id=run_id, entry=entry)


def begun(status: str = "active") -> DueItem:
    return DueItem(key="k", claimed=False, status=status, run_id="run-1")


@pytest.mark.parametrize("status", ["pending", "suspended", "interrupted", "active"])
def test_a_claim_whose_run_the_engine_does_not_know_is_in_doubt(status: str) -> None:
    decision = decide(claim(status=status), RunState.UNKNOWN)
    assert decision.action is Action.DOUBT
    assert "run-1" in decision.reason


def test_a_claim_with_no_run_id_is_resent_not_doubted() -> None:
    assert decide(claim(run_id=""), None).action is Action.RESEND


def test_a_begun_run_the_engine_does_not_know_is_in_doubt_not_failed() -> None:
    assert decide(begun(), RunState.UNKNOWN).action is Action.DOUBT
    assert decide(begun("suspended"), RunState.UNKNOWN).action is Action.DOUBT


@pytest.mark.parametrize("state", [None, RunState.QUEUED, RunState.RUNNING])
def test_a_run_the_engine_answers_for_is_left(state: RunState | None) -> None:
    assert decide(begun(), state).action is Action.LEAVE
    assert decide(claim(), state).action is Action.LEAVE


@pytest.mark.parametrize(
    ("state", "action"),
    [
        (RunState.FAILED, Action.FAIL),
        (RunState.TIMED_OUT, Action.FAIL),
        (RunState.COMPLETED, Action.FAIL),
        (RunState.CANCELLED, Action.CANCEL),
    ],
)
def test_a_begun_run_the_engine_ended_is_settled(state: RunState, action: Action) -> None:
    assert decide(begun(), state).action is action


def test_a_claimed_container_is_restarted() -> None:
    assert decide(claim(kind="chain"), RunState.UNKNOWN).action is Action.RESTART


def test_the_unknown_window_defaults_to_ten_minutes_and_may_be_zero() -> None:
    assert MageflowConfig().reconcile_unknown_window == timedelta(minutes=10)
    assert MageflowConfig(reconcile_unknown_window=timedelta(0)).reconcile_unknown_window == (
        timedelta(0)
    )
    with pytest.raises(ValidationError, match="reconcile_unknown_window"):
        MageflowConfig(reconcile_unknown_window=timedelta(seconds=-1))
