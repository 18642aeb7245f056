"""Hatchet errors and signals are mapped at the adapter seam, in one place."""

from __future__ import annotations

import pytest
from hatchet_sdk.clients.rest.exceptions import NotFoundException, RestConnectionError
from hatchet_sdk.exceptions import NonRetryableException
from mageflow import EngineError, MageflowError, NonRetryable, SignatureNotFoundError
from mageflow_hatchet import ExecutionTimeoutError
from mageflow_hatchet._errors import map_hatchet_exceptions, to_hatchet_signal


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


def test_execution_timeout_is_final_for_core_and_for_hatchet() -> None:
    error = ExecutionTimeoutError("too slow")
    assert isinstance(error, NonRetryable)
    assert isinstance(error, MageflowError)
    assert isinstance(error, NonRetryableException)
    assert to_hatchet_signal(error) is error
