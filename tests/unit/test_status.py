"""The status table: every cell, next_status, terminal set, PREVIOUS."""

from __future__ import annotations

import re

import pytest
import thirdmagic.status as status_module
from thirdmagic import (
    PREVIOUS,
    TERMINAL_STATUSES,
    TRANSITIONS,
    LifecycleEvent,
    PauseActionTypes,
    SignatureStatus,
    TaskStatus,
    next_status,
)

S = SignatureStatus
E = LifecycleEvent

# An independent statement of the table; "." is an invalid transition.
# columns: start, succeed, fail, suspend, interrupt, resume, cancel, retry, skip
EXPECTED = {
    S.PENDING: [
        "active",
        ".",
        ".",
        "suspended",
        "interrupted",
        "pending",
        "canceled",
        ".",
        "skipped",
    ],
    S.ACTIVE: [
        "active",
        "done",
        "failed",
        "suspended",
        "interrupted",
        "active",
        "canceled",
        ".",
        ".",
    ],
    S.SUSPENDED: [
        "suspended",
        "done",
        "failed",
        "suspended",
        "interrupted",
        PREVIOUS,
        "canceled",
        ".",
        "skipped",
    ],
    S.INTERRUPTED: [".", ".", ".", ".", "interrupted", "pending", "canceled", ".", "skipped"],
    S.DONE: [".", "done", ".", ".", ".", ".", ".", ".", "."],
    S.FAILED: [".", ".", "failed", ".", ".", ".", ".", "pending", "."],
    S.CANCELED: [".", ".", ".", ".", ".", ".", "canceled", "pending", "."],
    S.SKIPPED: [".", ".", ".", ".", ".", ".", ".", "pending", "skipped"],
}
EVENTS = [E.START, E.SUCCEED, E.FAIL, E.SUSPEND, E.INTERRUPT, E.RESUME, E.CANCEL, E.RETRY, E.SKIP]
CELLS = [(s, e, EXPECTED[s][i]) for s in S for i, e in enumerate(EVENTS)]


def test_statuses_and_events() -> None:
    assert {s.value for s in S} == {
        "pending",
        "active",
        "suspended",
        "interrupted",
        "done",
        "failed",
        "canceled",
        "skipped",
    }
    assert set(EVENTS) == set(E)
    assert {p.value for p in PauseActionTypes} == {"suspend", "interrupt"}


@pytest.mark.parametrize(
    ("status", "event", "expected"), CELLS, ids=[f"{s.value}-{e.value}" for s, e, _ in CELLS]
)
def test_every_cell_of_the_table(status: S, event: E, expected: str) -> None:
    target = TRANSITIONS.get((status, event))
    if expected == ".":
        assert target is None
        assert next_status(status, event, None) is None
        assert next_status(status, event, S.ACTIVE) is None
    elif expected == PREVIOUS:
        assert target == PREVIOUS
    else:
        assert target == S(expected)
        assert next_status(status, event, None) == S(expected)
        assert next_status(status, event, S.SUSPENDED) == S(expected)


def test_table_has_no_cells_beyond_the_expected_ones() -> None:
    valid = {(s, e) for s, e, t in CELLS if t != "."}
    assert set(TRANSITIONS) == valid


def test_docstring_table_matches_transitions() -> None:
    doc = status_module.__doc__ or ""
    rows = {}
    for line in doc.splitlines():
        parts = line.split()
        if parts and parts[0] in {s.value for s in S} and len(parts) == 1 + len(EVENTS):
            rows[S(parts[0])] = parts[1:]
    assert set(rows) == set(S)
    for s, cells in rows.items():
        for e, cell in zip(EVENTS, cells, strict=True):
            want = TRANSITIONS.get((s, e))
            if cell == "·":
                assert want is None, (s, e)
            elif cell == "*previous*":
                assert want == PREVIOUS, (s, e)
            else:
                assert want == S(cell), (s, e)
    assert re.search(r"status \\+ event", doc)


@pytest.mark.parametrize("previous", [S.PENDING, S.ACTIVE])
def test_resume_from_suspended_restores_previous(previous: S) -> None:
    assert next_status(S.SUSPENDED, E.RESUME, previous) == previous


def test_resume_from_suspended_without_previous_is_pending() -> None:
    assert next_status(S.SUSPENDED, E.RESUME, None) == S.PENDING


def test_terminal_statuses() -> None:
    assert frozenset({S.DONE, S.FAILED, S.CANCELED, S.SKIPPED}) == TERMINAL_STATUSES
    for terminal in TERMINAL_STATUSES:
        # A terminal status only accepts the event that repeats how it ended,
        # and retry (failed and canceled), which starts a new attempt.
        allowed = {e for (s, e) in TRANSITIONS if s == terminal} - {E.RETRY}
        assert len(allowed) <= 1
        for event in allowed:
            assert next_status(terminal, event, None) == terminal
        # Only retry leads out of a terminal status, and only back to pending.
        for e in E:
            want = S.PENDING if e is E.RETRY and terminal is not S.DONE else terminal
            assert next_status(terminal, e, None) in (None, want)


def test_repeating_an_event_is_idempotent() -> None:
    for (s, e), target in TRANSITIONS.items():
        after = next_status(s, e, S.PENDING)
        assert after is not None
        if target == PREVIOUS:
            continue
        again = next_status(after, e, s)
        # Either the repeat is a no-op, or it is invalid (never a corruption).
        assert again in (None, after), (s, e, after, again)


def test_every_status_reachable_from_pending() -> None:
    seen = {S.PENDING}
    frontier = [S.PENDING]
    while frontier:
        cur = frontier.pop()
        for e in E:
            for prev in (S.PENDING, S.ACTIVE):
                nxt = next_status(cur, e, prev)
                if nxt is not None and nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
    assert seen == set(S)


def test_task_status_defaults_and_json() -> None:
    st = TaskStatus()
    assert st.status == S.PENDING
    assert st.last_status is None
    other = TaskStatus(status="suspended", last_status="active")
    assert TaskStatus.model_validate_json(other.model_dump_json()) == other
    with pytest.raises(ValueError):
        TaskStatus(status="bogus")
