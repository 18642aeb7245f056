"""Hatchet errors and signals are mapped at the adapter seam, in one place."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest.mock import MagicMock

import pytest
from hatchet_sdk.clients.rest.exceptions import NotFoundException, RestConnectionError
from hatchet_sdk.clients.rest.models.v1_task_event import V1TaskEvent
from hatchet_sdk.exceptions import NonRetryableException
from mageflow import (
    DispatchRefusedError,
    EngineError,
    MageflowError,
    NonRetryable,
    SignatureNotFoundError,
)
from mageflow.engine import RunState
from mageflow_hatchet import ExecutionTimeoutError
from mageflow_hatchet._errors import dispatch_error, map_hatchet_exceptions, to_hatchet_signal
from mageflow_hatchet.manager import _engine_now, _engine_retries, _failed_state


class FakeRpcError(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(f"rpc {name}")
        self._name = name

    def code(self) -> object:
        return type("Code", (), {"name": self._name})()


@pytest.mark.parametrize(
    ("raised", "reason"),
    [
        (FakeRpcError("NOT_FOUND"), "does not know it"),
        (FakeRpcError("UNAVAILABLE"), "cannot be reached"),
        (NotFoundException(status=404, reason="nope"), "does not know it"),
        (RestConnectionError(reason="refused"), "cannot be reached"),
        (RuntimeError("odd"), "hatchet client failed"),
    ],
)
def test_hatchet_failures_become_engine_errors_naming_the_reason(
    raised: Exception, reason: str
) -> None:
    with pytest.raises(EngineError, match=reason) as info, map_hatchet_exceptions("dispatch"):
        raise raised
    assert info.value.__cause__ is raised
    assert "hatchet dispatch failed" in str(info.value)


def test_mageflow_errors_pass_the_seam_unchanged() -> None:
    error = SignatureNotFoundError("k")
    with pytest.raises(SignatureNotFoundError) as info, map_hatchet_exceptions("cancel"):
        raise error
    assert info.value is error


def test_core_non_retryable_becomes_hatchets_on_the_way_out() -> None:
    original = NonRetryable("card declined")
    mapped = to_hatchet_signal(original)
    assert isinstance(mapped, NonRetryableException)
    assert mapped.__cause__ is original
    other = ValueError("x")
    assert to_hatchet_signal(other) is other


def test_execution_timeout_is_retried_like_any_failure() -> None:
    # issue 7: a timeout spends a retry when one is left, as Hatchet does
    error = ExecutionTimeoutError("too slow")
    assert not isinstance(error, NonRetryable)
    assert isinstance(error, MageflowError)
    assert isinstance(error, TimeoutError)
    assert not isinstance(error, NonRetryableException)
    assert to_hatchet_signal(error) is error


class _Grpc(Exception):
    def __init__(self, status: str) -> None:
        super().__init__(f"grpc {status}")
        self.status = status

    def code(self) -> object:
        return type("Code", (), {"name": self.status})()


@pytest.mark.parametrize("status", ["INVALID_ARGUMENT", "NOT_FOUND", "PERMISSION_DENIED"])
def test_a_trigger_the_engine_refused_is_dispatch_refused(status: str) -> None:
    error = dispatch_error("dispatch of 't'", _Grpc(status))
    assert isinstance(error, DispatchRefusedError)
    assert "nothing was run" in str(error)


@pytest.mark.parametrize(
    "exc", [_Grpc("UNAVAILABLE"), _Grpc("DEADLINE_EXCEEDED"), TimeoutError("slow")]
)
def test_a_trigger_of_unknown_outcome_is_not_refused(exc: Exception) -> None:
    error = dispatch_error("dispatch of 't'", exc)
    assert isinstance(error, EngineError) and not isinstance(error, DispatchRefusedError)


NOW = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)


def _event(kind: str, retry_count: int | None, n: int, error: str | None = None) -> V1TaskEvent:
    return V1TaskEvent.model_validate(
        {
            "id": n,
            "taskId": "00000000-0000-0000-0000-000000000000",
            "timestamp": f"2026-01-01T00:00:{n:02d}Z",
            "eventType": kind,
            "message": "",
            "errorMessage": error,
            "retryCount": retry_count,
        }
    )


@pytest.mark.parametrize(
    ("events", "retries", "state"),
    [
        ([], 3, RunState.FAILED),
        ([("STARTED", 0), ("FAILED", 0)], 0, RunState.FAILED),
        # the budget unknown: any failure may still be retried, for a while
        ([("STARTED", 0), ("FAILED", 0)], None, RunState.RUNNING),
        # attempts left: the engine retries it, its status lags
        ([("ASSIGNED", 0), ("FAILED", 0)], 3, RunState.RUNNING),
        ([("FAILED", 0), ("ASSIGNED", 1)], None, RunState.RUNNING),
        ([("FAILED", 2), ("ASSIGNED", 3), ("FAILED", 3)], 3, RunState.FAILED),
        ([("STARTED", 0), ("TIMED_OUT", 0)], 0, RunState.TIMED_OUT),
        ([("STARTED", 0), ("TIMED_OUT", 0)], 2, RunState.RUNNING),
        ([("QUEUED", 0), ("SCHEDULING_TIMED_OUT", 0)], 5, RunState.TIMED_OUT),
        # an earlier attempt timed out and was retried; the last one failed
        ([("TIMED_OUT", 0), ("STARTED", 1), ("FAILED", 1)], 1, RunState.FAILED),
        ([("FAILED", 0), ("STARTED", 1), ("TIMED_OUT", 1)], 1, RunState.TIMED_OUT),
        ([("STARTED", None), ("TIMED_OUT", None)], 0, RunState.TIMED_OUT),
    ],
)
def test_a_failed_run_is_read_by_its_last_attempt(
    events: list[tuple[str, int | None]], retries: int | None, state: RunState
) -> None:
    rows = [_event(kind, rc, n) for n, (kind, rc) in enumerate(events)]
    assert _failed_state(rows, retries, NOW) is state


def test_a_failure_with_attempts_left_is_final_after_the_grace() -> None:
    rows = [_event("STARTED", 0, 1), _event("FAILED", 0, 2)]
    assert _failed_state(rows, 3, NOW + timedelta(minutes=5)) is RunState.FAILED


def test_a_send_to_a_dead_worker_is_retried_past_the_budget() -> None:
    # the engine retries such sends beyond the task's retries (seen in the
    # long fault-injection run: completed on attempt 12 of a budget of 10)
    sent = _event("FAILED", 10, 2, error="Could not send task to worker. This likely means...")
    rows = [_event("ASSIGNED", 10, 1), sent]
    assert _failed_state(rows, 10, NOW) is RunState.RUNNING
    assert _failed_state(rows, 10, NOW + timedelta(minutes=5)) is RunState.FAILED


def test_event_ages_are_read_on_the_engine_clock() -> None:
    now = _engine_now({"Date": "Thu, 01 Jan 2026 00:05:00 GMT"})
    assert now == datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    assert _engine_now({}).tzinfo is not None


def test_the_engine_retry_budget_comes_from_the_reported_workflow_config() -> None:
    task = MagicMock(action_id="t:t", workflow_config={"Tasks": [{"Action": "t:t", "Retries": 10}]})
    assert _engine_retries(task) == 10
    assert _engine_retries(MagicMock(action_id="t:t", workflow_config=None)) is None
