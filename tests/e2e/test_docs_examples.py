"""The README demo and the docs' engine examples, run the way a user runs them.

* ``examples/order_pipeline.py`` exactly as the README's first command runs it:
  its own embedded engine, the bundled valkey-server, its own worker.
* ``docs/examples/quickstart.py`` and ``client_options.py``: their workers and
  their ``run`` commands as subprocesses, on this session's engine and Redis.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest

from tests.e2e._engine import Engine, engine_unavailable, engine_unavailable_reason
from tests.e2e._worker import REPO_ROOT, WorkerProcess

pytestmark = pytest.mark.e2e

DOCS_EXAMPLES = REPO_ROOT / "docs" / "examples"

# what would connect a child to this session's engine or Redis instead of its own
SESSION_VARS = (
    "HATCHET_CLIENT_TOKEN",
    "HATCHET_CLIENT_TENANT_ID",
    "HATCHET_CLIENT_HOST_PORT",
    "HATCHET_CLIENT_SERVER_URL",
    "HATCHET_CLIENT_TLS_STRATEGY",
    "HATCHET_CLIENT_NAMESPACE",
    "HATCHET_EMBEDDED_HANDSHAKE",
    "REDIS_URL",
)


@dataclass
class Done:
    code: int
    stdout: str
    stderr: str

    def explain(self) -> str:
        return f"exit code {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def run_script(args: Sequence[str], env: dict[str, str], timeout: float) -> Done:
    """Run ``python ARGS`` in its own process group; on timeout SIGTERM, then SIGKILL it."""
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # SIGTERM lets the demo stop its worker, engine and valkey itself
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=45)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        pytest.fail(f"{args} did not finish within {timeout:.0f}s\n{out}\n{err}")
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return Done(proc.returncode, out, err)


def test_readme_demo_runs_end_to_end_on_embedded_defaults() -> None:
    reason = engine_unavailable_reason()
    if reason is not None:
        engine_unavailable(reason)
    env = {k: v for k, v in os.environ.items() if k not in SESSION_VARS}
    done = run_script(["examples/order_pipeline.py"], env, timeout=240)
    assert done.code == 0, done.explain()
    out = done.stdout
    assert "OK: every signature settled" in out, done.explain()
    assert "bundled valkey-server" in out
    # the suspended order was shown parked, then resumed
    assert "suspended  (parked: its run waits for resume)" in out
    assert "resumed order-1003-charge-" in out
    assert "card ending 0002 declined" in out
    assert "refund-order #1002:" in out and "alert-ops #1002:" in out
    assert "receipt for ch_" in out
    assert "logs: engine " in out


@pytest.fixture(scope="module")
def docs_env(hatchet_engine: Engine, redis_url: str) -> dict[str, str]:
    return hatchet_engine.worker_env({"REDIS_URL": redis_url})


@pytest.fixture(scope="module")
def docs_workers(docs_env: dict[str, str]) -> Iterator[list[WorkerProcess]]:
    workers = [
        WorkerProcess(
            str(DOCS_EXAMPLES / f"{name}.py"),
            docs_env,
            args=["worker"],
            name=f"docs-{name}",
            ready_timeout=120,
        )
        for name in ("quickstart", "client_options")
    ]
    try:
        for worker in workers:
            worker.start(wait=False)
        for worker in workers:
            worker.wait_ready()
        yield workers
    finally:
        for worker in workers:
            worker.stop()


def test_quickstart(docs_env: dict[str, str], docs_workers: list[WorkerProcess]) -> None:
    done = run_script([str(DOCS_EXAMPLES / "quickstart.py"), "run"], docs_env, timeout=150)
    logs = "\n".join(w.output() for w in docs_workers)
    assert done.code == 0, f"{done.explain()}\n--- workers\n{logs}"
    assert "order 1: " in done.stdout and "receipt" in done.stdout
    assert "order 2: " in done.stdout and "error callback" in done.stdout
    quickstart = docs_workers[0].output(tail=None)
    assert "receipt: order 1, 42.00 to ada@example.com" in quickstart
    assert "order 2 failed: payment declined" in quickstart


def test_client_options(docs_env: dict[str, str], docs_workers: list[WorkerProcess]) -> None:
    done = run_script([str(DOCS_EXAMPLES / "client_options.py"), "run"], docs_env, timeout=150)
    logs = "\n".join(w.output() for w in docs_workers)
    assert done.code == 0, f"{done.explain()}\n--- workers\n{logs}"
    for task in (
        "render-report",
        "report-with-ctx",
        "report-with-signature",
        "export-report",
        "archive-report",
        "report-all-params",
    ):
        assert f"{task}: done" in done.stdout, done.explain()
    assert "direct runs ok" in done.stdout
