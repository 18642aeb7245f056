"""Run Hatchet workers as subprocesses in e2e tests, and poll instead of sleeping.

``Hatchet.worker()`` installs signal handlers and ``worker.start()`` blocks and forks
its own children, so workers under test run as separate processes in their own
session: ``stop()`` sends SIGTERM to the whole process group (graceful), ``kill()``
SIGKILLs it at once (crash tests). Readiness is the SDK's worker healthcheck
(``/health`` answers 200 once the worker is registered and heartbeating).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

REPO_ROOT = Path(__file__).resolve().parents[2]

T = TypeVar("T")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WorkerProcess:
    """A worker subprocess: ``python -m MODULE`` or ``python PATH.py`` (+ args).

    ``env`` should contain the engine's client variables (``Engine.worker_env()``);
    the healthcheck variables are added here. Output goes to a log file
    (``output()``), which is quoted in errors.
    """

    def __init__(
        self,
        target: str,
        env: Mapping[str, str],
        *,
        args: Sequence[str] = (),
        name: str | None = None,
        cwd: str | Path | None = None,
        ready_timeout: float = 60.0,
        stop_timeout: float = 30.0,
        python: str = sys.executable,
    ) -> None:
        self.target = target
        self.args = list(args)
        self.name = name or Path(target).stem.rsplit(".", 1)[-1]
        self.cwd = Path(cwd) if cwd is not None else REPO_ROOT
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.python = python
        self.base_env = dict(env)
        self.health_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(tempfile.mkstemp(prefix=f"worker-{self.name}-", suffix=".log")[1])
        self.starts = 0

    # ------------------------------------------------------------------ state
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}/health"

    def output(self, tail: int | None = 200) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-tail:] if tail else lines)

    # -------------------------------------------------------------- lifecycle
    def _command(self) -> list[str]:
        if self.target.endswith(".py") or os.sep in self.target:
            return [self.python, str(self.target), *self.args]
        return [self.python, "-m", self.target, *self.args]

    def start(self, wait: bool = True) -> WorkerProcess:
        if self.running:
            raise RuntimeError(f"worker {self.name} is already running (pid {self.pid})")
        self.health_port = free_port()
        env = dict(self.base_env)
        env.update(
            {
                "HATCHET_CLIENT_WORKER_HEALTHCHECK_ENABLED": "True",
                "HATCHET_CLIENT_WORKER_HEALTHCHECK_PORT": str(self.health_port),
                "HATCHET_CLIENT_WORKER_HEALTHCHECK_BIND_ADDRESS": "127.0.0.1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"---- start #{self.starts}: {self._command()}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self._command(),
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if wait:
            self.wait_ready()
        return self

    def healthy(self) -> bool:
        """Whether /health answers 200 now (one probe, no waiting)."""
        return self.running and self._health_ok()

    def _health_ok(self) -> bool:
        try:
            with urllib.request.urlopen(self.health_url, timeout=1) as r:
                return int(r.status) == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until /health answers 200; fail fast if the process exits."""
        assert self.proc is not None, "worker not started"
        deadline = time.monotonic() + (timeout if timeout is not None else self.ready_timeout)
        while True:
            code = self.proc.poll()
            if code is not None:
                raise RuntimeError(
                    f"worker {self.name} exited with code {code} before becoming ready; "
                    f"output:\n{self.output()}"
                )
            if self._health_ok():
                return
            if time.monotonic() > deadline:
                out = self.output()
                self.kill()
                raise TimeoutError(
                    f"worker {self.name} not healthy at {self.health_url} within "
                    f"{timeout or self.ready_timeout:.0f}s; output:\n{out}"
                )
            time.sleep(0.2)

    def _signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM the process group, wait (deadline), then SIGKILL what is left."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout if timeout is not None else self.stop_timeout)
        # the SDK's worker forks children: never leave any of the group behind
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        return self.proc.returncode

    def kill(self) -> int | None:
        """SIGKILL the whole process group immediately (simulates a crash)."""
        if self.proc is None:
            return None
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        return self.proc.returncode

    def restart(self, *, graceful: bool = True, wait: bool = True) -> WorkerProcess:
        if graceful:
            self.stop()
        else:
            self.kill()
        return self.start(wait=wait)

    def __enter__(self) -> WorkerProcess:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


async def wait_until(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float = 30.0,
    interval: float = 0.2,
    message: str | None = None,
) -> T:
    """Poll ``predicate`` (sync or async) until it returns a truthy value; return it.

    Exceptions raised by the predicate count as "not yet"; the last one is chained
    to the TimeoutError.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    last_value: object = None
    while True:
        try:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            last_value = value
        except Exception as e:
            last_exc = e
        if time.monotonic() > deadline:
            what = message or getattr(predicate, "__name__", repr(predicate))
            raise TimeoutError(
                f"condition not met within {timeout}s: {what} (last value {last_value!r})"
            ) from last_exc
        await asyncio.sleep(interval)
