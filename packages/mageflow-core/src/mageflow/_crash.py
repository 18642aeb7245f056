"""Test-only crash points: SIGKILL this worker at a named step of a run.

Inert unless ``MAGEFLOW_TEST_CRASH`` is set (read once, at import; a check
costs one ``is None`` otherwise). It exists for MageFlow's own fault-injection
suite (``tests/chaos``, see docs/testing.md) and is not a user feature.

``MAGEFLOW_TEST_CRASH``
    Comma-separated ``point`` or ``point:probability`` (default 1.0). Points:
    ``begin:before``, ``begin:after``, ``finish:before``, ``finish:after``
    (the outcome is recorded, its dispatches are not sent yet),
    ``dispatch:after``, ``reconcile:settled`` (a reconciler recorded a
    re-send, failure or cancel; the re-send or the error callbacks are not
    sent yet).
``MAGEFLOW_TEST_CRASH_ONCE_DIR``
    When set, each point kills at most once per signature: a marker file in
    this directory remembers it, so the run's redelivery gets past the point.
``MAGEFLOW_TEST_CRASH_ONCE_PER``
    ``signature`` (default) or ``point``: with ``point``, each point kills at
    most once in all (a short, deterministic run).

The kill takes the worker's whole process group when the worker runs in a
session of its own (as the tests start it), like a machine loss.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
from pathlib import Path

__all__ = ["POINTS", "crash_point"]

POINTS = (
    "begin:before",
    "begin:after",
    "finish:before",
    "finish:after",
    "dispatch:after",
    "reconcile:settled",
)


def _parse(raw: str | None) -> dict[str, float] | None:
    if not raw:
        return None
    points: dict[str, float] = {}
    for part in raw.split(","):
        name, _, chance = part.strip().partition(":")
        # "finish:after:0.3": the point name itself has one colon
        head, _, tail = chance.partition(":")
        point = f"{name}:{head}" if head else name
        if point not in POINTS:
            raise ValueError(f"MAGEFLOW_TEST_CRASH: unknown crash point {point!r}; known: {POINTS}")
        points[point] = float(tail) if tail else 1.0
    return points


_ACTIVE = _parse(os.environ.get("MAGEFLOW_TEST_CRASH"))
_ONCE_DIR = os.environ.get("MAGEFLOW_TEST_CRASH_ONCE_DIR")
_PER_POINT = os.environ.get("MAGEFLOW_TEST_CRASH_ONCE_PER") == "point"


def crash_point(point: str, key: str) -> None:
    """SIGKILL this process at ``point`` of signature ``key``'s run when configured to."""
    if _ACTIVE is None:
        return
    chance = _ACTIVE.get(point)
    if chance is None or random.random() >= chance:
        return
    if _ONCE_DIR:
        digest = hashlib.sha1(f"{point}|{'' if _PER_POINT else key}".encode()).hexdigest()
        marker = Path(_ONCE_DIR) / digest
        try:
            marker.touch(exist_ok=False)
        except FileExistsError:
            return
    group = os.getpgrp()
    if os.getsid(0) == group:
        # a worker started in its own session: take its children with it
        os.killpg(group, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
