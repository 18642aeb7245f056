"""Pure parts of the outcome/steering API and the CLI: no Redis, no engine."""

from __future__ import annotations

import io
from typing import Any

import pytest
from mageflow._query import _parse_identifiers, identifier_text
from mageflow._results import error_payload
from mageflow.cli import EXIT_CODES, _exit_code, _tree_lines, main
from pydantic import BaseModel
from thirdmagic import (
    MAX_TRACEBACK_CHARS,
    ErrorDetails,
    ErrorInfo,
    InvalidTransitionError,
    MageflowValidationError,
    ResultTimeoutError,
    SignatureCanceledError,
    SignatureFailedError,
    SignatureNotFoundError,
    StoreError,
    resolve_error_field,
)


class WithInfo(BaseModel):
    n: int
    error: ErrorInfo[ErrorDetails | None] = None


class Without(BaseModel):
    n: int


class Twice(BaseModel):
    a: ErrorInfo[ErrorDetails | None] = None
    b: ErrorInfo[ErrorDetails | None] = None


def test_error_field_is_the_marked_one_or_none() -> None:
    assert resolve_error_field(WithInfo) == "error"
    assert resolve_error_field(Without) is None
    assert resolve_error_field(None) is None
    with pytest.raises(MageflowValidationError) as info:
        resolve_error_field(Twice)
    assert info.value.field == "b"


def test_error_details_from_what_older_versions_stored() -> None:
    assert ErrorDetails.from_stored("ValueError: bad") == ErrorDetails(
        type="ValueError", message="bad"
    )
    assert ErrorDetails.from_stored("plain text") == ErrorDetails(message="plain text")
    full = {"type": "X", "message": "m", "traceback": "t", "signature_key": "k"}
    assert ErrorDetails.from_stored(full).model_dump() == full


def test_error_payload_names_the_type_and_bounds_the_traceback() -> None:
    try:
        raise ValueError("x" * 20_000 + " end")
    except ValueError as exc:
        payload = error_payload(exc, "k1")
    assert payload["type"] == "ValueError"  # builtins are not qualified
    assert len(payload["message"]) == 2001 and payload["message"].endswith("x…")
    assert payload["signature_key"] == "k1"
    assert len(payload["traceback"]) <= MAX_TRACEBACK_CHARS + 10
    assert payload["traceback"].startswith("...\n")
    assert payload["traceback"].rstrip().endswith(" end")

    class Custom(Exception):
        pass

    payload = error_payload(Custom("x"), "k2")
    assert payload["type"].endswith("Custom") and "." in payload["type"]


def test_failed_errors_carry_details_and_say_them() -> None:
    details = ErrorDetails(type="ValueError", message="bad amount")
    err = SignatureFailedError("k", "failed", details)
    assert err.error is details and "ValueError: bad amount" in str(err)
    assert isinstance(SignatureCanceledError("k", "canceled"), SignatureFailedError)
    timeout = ResultTimeoutError("k", 1.5, "active")
    assert isinstance(timeout, TimeoutError) and "1.50s" in str(timeout)


def test_identifier_text_matches_the_lua_side() -> None:
    assert identifier_text("1042") == "1042"
    assert identifier_text(1042) == "1042"
    assert identifier_text(True) == "true"
    assert identifier_text([1, "a"]) == '[1,"a"]'
    assert _parse_identifiers(["order=1042", "shop=eu=1"]) == {"order": "1042", "shop": "eu=1"}
    assert _parse_identifiers({"order": 7}) == {"order": "7"}
    with pytest.raises(MageflowValidationError):
        _parse_identifiers(["=x"])


def test_exit_codes_are_distinct_and_documented() -> None:
    assert sorted(EXIT_CODES) == [0, 1, 2, 3, 4, 5, 6]
    assert _exit_code(SignatureNotFoundError("k")) == 3
    assert _exit_code(InvalidTransitionError("k", "done", "resume")) == 4
    assert _exit_code(StoreError("down")) == 5
    assert _exit_code(MageflowValidationError("bad")) == 2


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["show"],
        ["ls", "--limit", "x"],
        ["ls", "--status", "bogus"],
        ["watch"],
    ],
)
def test_bad_usage_exits_2_before_touching_redis(argv: list[str]) -> None:
    err = io.StringIO()
    assert main(argv, io.StringIO(), err) == 2


def test_help_lists_the_exit_codes() -> None:
    out = io.StringIO()
    assert main(["--help"], out, io.StringIO()) == 0


def test_tree_lines_draw_members_callbacks_and_counters() -> None:
    leaf: dict[str, Any] = {"key": "t1", "kind": "task", "task_name": "a", "status": "done"}
    failed: dict[str, Any] = {
        "key": "t2",
        "kind": "task",
        "task_name": "b",
        "status": "failed",
        "error": {"type": "ValueError", "message": "bad"},
    }
    tree = {
        "key": "s",
        "kind": "swarm",
        "task_name": "mageflow.swarm",
        "status": "active",
        "progress": {"done": 1, "admitted": 2, "running": 0, "queued": 0, "failed": 1},
        "members": [leaf, failed],
        "success_callbacks": [{"key": "cb", "kind": "task", "task_name": "n", "status": "pending"}],
        "more_members": 3,
    }
    lines = _tree_lines(tree)
    assert lines[0].startswith("swarm s (mageflow.swarm) ▶ active [1/2 done")
    assert lines[1].startswith("├─ task t1 (a) ✔ done")
    assert "✘ failed — ValueError: bad" in lines[2]
    assert lines[3].startswith("└─ on success: task cb")
    assert lines[-1].strip() == "… 3 more members"
