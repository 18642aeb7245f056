#!/usr/bin/env python3
"""A stand-in for the hatchet-embedded sidecar, built on the classic Hatchet binaries.

hatchet-sdk's embedded mode (``Hatchet.from_embedded()`` /
``hatchet_sdk.embedded.start_embedded_sidecar``) spawns a sidecar binary as::

    BINARY -handshake-file PATH [-database-url URL] [-grpc-port N] [-api-port N]
           [-no-api] [-no-migrations] [-log-level L] [-rabbitmq-url URL] [-postgres-data-dir DIR]

with stdin as a pipe, waits for PATH to hold ``{"token", "tenant_id", "grpc_address",
"api_url"}`` and expects the sidecar to exit when its stdin closes or on SIGTERM.
The official sidecar cannot be fetched on our machines, so this script speaks the
same command line on top of ``hatchet-migrate``, ``hatchet-admin`` and
``hatchet-lite`` (built by tools/engine/build-hatchet.sh)::

    export HATCHET_CLIENT_EMBEDDED_BINARY_PATH=$PWD/tools/engine/sidecar.py

What it does:

* without ``-database-url``: initdb + start a throwaway PostgreSQL cluster (Debian's
  binaries; as the ``postgres`` user when run as root) in its temp dir, on a free
  127.0.0.1 port, with timezone=UTC, fsync/synchronous_commit off; removed at exit.
  ``-postgres-data-dir DIR`` keeps that cluster in DIR instead (reused next time).
* with ``-database-url``: the database is used as it is (like the official sidecar):
  migrations are idempotent, the default tenant is reused, a fresh token is minted.
  The engine's generated keys are kept per database URL under
  ``$MAGEFLOW_ENGINE_DIR/state/`` so tokens of earlier runs stay valid. Give each
  concurrent run its own database; two engines on one database share one tenant.
* runs hatchet-migrate, ``hatchet-admin quickstart`` and ``token create``, starts
  hatchet-lite (gRPC on 127.0.0.1, insecure; REST API on 127.0.0.1), all on free
  ports unless ``-grpc-port``/``-api-port`` say otherwise, waits until both answer,
  then writes the handshake atomically.
* blocks until stdin reaches EOF (or SIGTERM/SIGINT; ``-ignore-stdin`` for manual
  use), then stops hatchet-lite and PostgreSQL (whole process groups) and removes
  its temp dir. It also exits (non-zero) if the engine or PostgreSQL dies.

``-no-api`` is accepted, but hatchet-lite always serves the REST API, so it is still
reported. Logs: short progress lines on stderr; the full engine/PostgreSQL output
goes to ``<tempdir>/sidecar.log`` (its last lines are copied to stderr on failure).

Environment:
  MAGEFLOW_ENGINE_BIN_DIR   directory with the three hatchet binaries
                            (default $MAGEFLOW_ENGINE_DIR/<tag>/bin)
  MAGEFLOW_ENGINE_DIR       default $HOME/.cache/mageflow/engine
  HATCHET_ENGINE_TAG        default v0.105.0
  MAGEFLOW_PG_BIN_DIR       PostgreSQL server binaries (default: newest /usr/lib/postgresql/*/bin)
  MAGEFLOW_ENGINE_KEEP_TMP  1 = keep the temp dir (logs, cluster) at exit
  MAGEFLOW_ENGINE_TMPDIR    parent of the temp dir (default: the system temp dir)
  MAGEFLOW_ENGINE_SET_<VAR> set <VAR> for the engine processes (e.g. SERVER_LOGGER_LEVEL)

Standard library only.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import glob
import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

DEFAULT_TAG = "v0.105.0"
BINARIES = ("hatchet-migrate", "hatchet-admin", "hatchet-lite")
# engine/server settings inherited from the caller's environment would silently change
# the engine; drop them (MAGEFLOW_ENGINE_SET_<VAR> is the explicit way to set one)
SCRUBBED_PREFIXES = (
    "SERVER_",
    "DATABASE_",
    "LITE_",
    "READ_REPLICA_",
    "ADMIN_",
    "DEFAULT_TENANT_",
    "CACHE_DURATION",
    "K8S_POD_NAMESPACE",
)
STARTUP_TIMEOUT = float(os.environ.get("MAGEFLOW_ENGINE_STARTUP_TIMEOUT", "180"))

_t0 = time.monotonic()
_log_lock = threading.Lock()


class _Log:
    file: IO[str] | None = None


def log(msg: str) -> None:
    line = f"[hatchet-sidecar +{time.monotonic() - _t0:5.1f}s] {msg}"
    with _log_lock:
        print(line, file=sys.stderr, flush=True)
        if _Log.file is not None:
            _Log.file.write(line + "\n")
            _Log.file.flush()


class Abort(Exception):
    """Startup aborted (signal, stdin closed, or a child died)."""


class Sidecar:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stop = threading.Event()
        self.stop_reason = ""
        self.tmp = Path(
            tempfile.mkdtemp(
                prefix="mageflow-hatchet-", dir=os.environ.get("MAGEFLOW_ENGINE_TMPDIR")
            )
        )
        self.log_path = self.tmp / "sidecar.log"
        self.procs: list[tuple[str, subprocess.Popen[bytes], int]] = []
        self.pg_proc: subprocess.Popen[bytes] | None = None
        self.pg_data: Path | None = None
        self.keep_pg_data = False
        self.failed = False

    # ---------------------------------------------------------------- helpers
    def request_stop(self, reason: str) -> None:
        if not self.stop.is_set():
            self.stop_reason = reason
            self.stop.set()

    def check(self) -> None:
        if self.stop.is_set():
            raise Abort(self.stop_reason)
        for name, proc, _ in self.procs:
            if proc.poll() is not None:
                raise Abort(f"{name} exited with code {proc.returncode}")

    def wait_for(
        self, what: str, probe: Callable[[], bool], timeout: float, interval: float = 0.1
    ) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.check()
            if probe():
                return
            if time.monotonic() > deadline:
                raise Abort(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(interval)

    def run(
        self,
        name: str,
        cmd: list[str],
        *,
        env: dict[str, str] | None = None,
        user: str | None = None,
        timeout: float = 120,
        capture: bool = False,
    ) -> str:
        """Run a short-lived command, output to the log file; return its stdout if capture."""
        self.check()
        t = time.monotonic()
        assert _Log.file is not None
        proc = subprocess.Popen(
            cmd,
            cwd=self.tmp,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else _Log.file,
            stderr=_Log.file,
            start_new_session=True,
            **_as_user(user),
        )
        self.procs.append((name, proc, signal.SIGTERM))
        try:
            deadline = time.monotonic() + timeout
            out = b""
            if capture:
                assert proc.stdout is not None
                out = proc.stdout.read()
            while proc.poll() is None:
                if self.stop.is_set():
                    raise Abort(self.stop_reason)
                if time.monotonic() > deadline:
                    raise Abort(f"{name} did not finish within {timeout:.0f}s")
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                _killpg(proc, signal.SIGKILL)
                proc.wait()
            self.procs.remove((name, proc, signal.SIGTERM))
        if proc.returncode != 0:
            raise Abort(f"{name} failed with exit code {proc.returncode} (see {self.log_path})")
        log(f"{name}: ok ({time.monotonic() - t:.1f}s)")
        return out.decode(errors="replace")

    def spawn(
        self, name: str, cmd: list[str], env: dict[str, str] | None, user: str | None, stop_sig: int
    ) -> subprocess.Popen[bytes]:
        assert _Log.file is not None
        proc = subprocess.Popen(
            cmd,
            cwd=self.tmp,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=_Log.file,
            stderr=_Log.file,
            start_new_session=True,
            **_as_user(user),
        )
        self.procs.append((name, proc, stop_sig))
        return proc

    # --------------------------------------------------------------- postgres
    def start_postgres(self) -> str:
        bindir = _pg_bindir()
        user = None
        if os.geteuid() == 0:
            user = os.environ.get("MAGEFLOW_PG_USER", "postgres")
            try:
                pw = pwd.getpwnam(user)
            except KeyError as e:
                raise Abort(
                    f"running as root but there is no {user!r} user to run PostgreSQL as "
                    "(install Debian's postgresql package: bash tools/engine/install.sh)"
                ) from e
            os.chmod(self.tmp, 0o711)  # the postgres user must reach its dirs below
        if self.args.postgres_data_dir:
            data = Path(self.args.postgres_data_dir).resolve()
            self.keep_pg_data = True
        else:
            data = self.tmp / "pgdata"
        sock = self.tmp / "pgsock"
        for d in (data, sock):
            d.mkdir(parents=True, exist_ok=True)
            if user is not None:
                os.chown(d, pw.pw_uid, pw.pw_gid)
        os.chmod(data, 0o700)
        self.pg_data = data

        if not (data / "PG_VERSION").exists():
            self.run(
                "initdb",
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "hatchet",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
                env=_pg_env(),
                user=user,
            )
            fresh = True
        else:
            fresh = False
            with contextlib.suppress(FileNotFoundError):
                (data / "postmaster.pid").unlink()  # stale pid file of a killed run

        port = _free_port()
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(port),
            "unix_socket_directories": str(sock),
            "timezone": "UTC",
            "log_timezone": "UTC",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "128MB",
            "max_locks_per_transaction": "256",
            "logging_collector": "off",
            "log_min_messages": "warning",
        }
        cmd = [str(bindir / "postgres"), "-D", str(data)]
        for k, v in settings.items():
            cmd += ["-c", f"{k}={v}"]
        t = time.monotonic()
        # SIGINT = PostgreSQL's "fast shutdown"
        self.pg_proc = self.spawn("postgres", cmd, _pg_env(), user, signal.SIGINT)
        self.wait_for("PostgreSQL", lambda: _pg_ready(data), timeout=60)
        log(f"postgres: ready on 127.0.0.1:{port} ({time.monotonic() - t:.1f}s), data {data}")
        if fresh:
            self.run(
                "createdb",
                [
                    str(bindir / "createdb"),
                    "-h",
                    str(sock),
                    "-p",
                    str(port),
                    "-U",
                    "hatchet",
                    "hatchet",
                ],
                env=_pg_env(),
                user=user,
            )
        return f"postgresql://hatchet:hatchet@127.0.0.1:{port}/hatchet?sslmode=disable"

    # ----------------------------------------------------------------- engine
    def start(self) -> dict[str, str]:
        args = self.args
        bindir = _engine_bindir()
        log(f"temp dir {self.tmp}; full log {self.log_path}; binaries {bindir}")

        if args.database_url:
            db_url = args.database_url
            state = _engine_dir() / "state" / hashlib.sha256(db_url.encode()).hexdigest()[:16]
            state.mkdir(parents=True, exist_ok=True)
            config_dir = state
        else:
            db_url = self.start_postgres()
            config_dir = (
                self.pg_data.parent / (self.pg_data.name + "-hatchet-config")
                if self.keep_pg_data and self.pg_data is not None
                else self.tmp / "config"
            )
            config_dir.mkdir(parents=True, exist_ok=True)

        grpc_port = args.grpc_port or _free_port()
        api_port = args.api_port or _free_port()
        grpc_address = f"127.0.0.1:{grpc_port}"
        api_url = f"http://127.0.0.1:{api_port}"
        health_port = _free_port()
        static = self.tmp / "static"
        static.mkdir(exist_ok=True)
        (static / "index.html").write_text(
            "<!doctype html><title>hatchet</title><p>MageFlow test engine: no dashboard; "
            "the REST API is under /api.</p>\n"
        )

        level = args.log_level or "warn"
        env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_PREFIXES)}
        env.update(
            {
                "DATABASE_URL": db_url,
                "DATABASE_LOGGER_LEVEL": level,
                "DATABASE_LOGGER_FORMAT": "console",
                "SERVER_LOGGER_LEVEL": level,
                "SERVER_LOGGER_FORMAT": "console",
                "SERVER_ADDITIONAL_LOGGERS_QUEUE_LEVEL": level,
                "SERVER_ADDITIONAL_LOGGERS_QUEUE_FORMAT": "console",
                "SERVER_ADDITIONAL_LOGGERS_PGXSTATS_LEVEL": "error",
                "SERVER_ADDITIONAL_LOGGERS_PGXSTATS_FORMAT": "console",
                # the token embeds SERVER_URL and the gRPC broadcast address: they must be
                # identical when the token is minted and when the engine serves
                "SERVER_PORT": str(api_port),
                "SERVER_URL": api_url,
                "SERVER_GRPC_PORT": str(grpc_port),
                "SERVER_GRPC_BIND_ADDRESS": "127.0.0.1",
                "SERVER_GRPC_BROADCAST_ADDRESS": grpc_address,
                "SERVER_GRPC_INSECURE": "true",
                "SERVER_INTERNAL_CLIENT_BASE_STRATEGY": "none",
                "SERVER_INTERNAL_CLIENT_BASE_INHERIT_BASE": "false",
                "SERVER_INTERNAL_CLIENT_INTERNAL_GRPC_BROADCAST_ADDRESS": grpc_address,
                "SERVER_HEALTHCHECK": "true",
                "SERVER_HEALTHCHECK_PORT": str(health_port),
                "SERVER_AUTH_COOKIE_DOMAIN": "localhost",
                "SERVER_AUTH_COOKIE_INSECURE": "true",
                "SERVER_AUTH_SET_EMAIL_VERIFIED": "true",
                "SERVER_SECURITY_CHECK_ENABLED": "false",
                # hatchet-lite's static file server and reverse proxy need ports too
                # (defaults 8081/8082 would collide between concurrent engines)
                "LITE_STATIC_ASSET_DIR": str(static),
                "LITE_FRONTEND_PORT": str(_free_port()),
                "LITE_RUNTIME_PORT": str(_free_port()),
            }
        )
        if args.rabbitmq_url:
            env["SERVER_MSGQUEUE_KIND"] = "rabbitmq"
            env["SERVER_MSGQUEUE_RABBITMQ_URL"] = args.rabbitmq_url
        else:
            env["SERVER_MSGQUEUE_KIND"] = "postgres"
        for k, v in os.environ.items():
            if k.startswith("MAGEFLOW_ENGINE_SET_"):
                env[k.removeprefix("MAGEFLOW_ENGINE_SET_")] = v

        if not args.no_migrations:
            self.run("hatchet-migrate", [str(bindir / "hatchet-migrate")], env=env, timeout=300)
        self.run(
            "hatchet-admin quickstart",
            [
                str(bindir / "hatchet-admin"),
                "quickstart",
                "--skip",
                "certs",
                "--config",
                str(config_dir),
                "--generated-config-dir",
                str(config_dir),
                "--overwrite=false",
            ],
            env=env,
        )
        out = self.run(
            "hatchet-admin token create",
            [
                str(bindir / "hatchet-admin"),
                "token",
                "create",
                "--config",
                str(config_dir),
                "--name",
                f"mageflow-{os.getpid()}-{secrets.token_hex(3)}",
            ],
            env=env,
            capture=True,
        )
        tokens = [w for w in out.split() if w.startswith("ey") and w.count(".") == 2]
        if not tokens:
            raise Abort(f"hatchet-admin token create printed no token: {out[-500:]!r}")
        token = tokens[-1]
        tenant_id = _jwt_claims(token).get("sub", "")

        t = time.monotonic()
        self.spawn(
            "hatchet-lite",
            [str(bindir / "hatchet-lite"), "--config", str(config_dir)],
            env,
            None,
            signal.SIGTERM,
        )
        self.wait_for("the engine's gRPC port", lambda: _tcp_open(grpc_port), STARTUP_TIMEOUT)
        self.wait_for(
            "the engine's readiness probe",
            lambda: _http_ok(f"http://127.0.0.1:{health_port}/ready"),
            STARTUP_TIMEOUT,
            0.2,
        )
        self.wait_for(
            "the REST API", lambda: _http_ok(f"{api_url}/api/ready"), STARTUP_TIMEOUT, 0.2
        )
        log(
            f"hatchet-lite: ready ({time.monotonic() - t:.1f}s): grpc {grpc_address}, api {api_url}"
        )
        return {
            "token": token,
            "tenant_id": tenant_id,
            "grpc_address": grpc_address,
            "api_url": api_url,
        }

    # --------------------------------------------------------------- teardown
    def teardown(self) -> None:
        # children first (hatchet-lite before postgres), newest first
        for name, proc, sig in reversed(self.procs.copy()):
            if proc.poll() is None:
                _killpg(proc, sig)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    log(f"{name} did not stop within 15s; killing it")
            # whatever is left of the group (e.g. postgres backends)
            _killpg(proc, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self.procs.clear()
        if self.failed:
            _dump_tail(self.log_path)
        if os.environ.get("MAGEFLOW_ENGINE_KEEP_TMP") == "1":
            log(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


# ------------------------------------------------------------------- functions
def _as_user(user: str | None) -> dict[str, Any]:
    if user is None:
        return {}
    pw = pwd.getpwnam(user)
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def _pg_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    env.pop("LANG", None)
    return env


def _engine_dir() -> Path:
    return Path(
        os.environ.get("MAGEFLOW_ENGINE_DIR") or Path.home() / ".cache" / "mageflow" / "engine"
    )


def _engine_bindir() -> Path:
    explicit = os.environ.get("MAGEFLOW_ENGINE_BIN_DIR")
    d = (
        Path(explicit)
        if explicit
        else _engine_dir() / os.environ.get("HATCHET_ENGINE_TAG", DEFAULT_TAG) / "bin"
    )
    missing = [b for b in BINARIES if not os.access(d / b, os.X_OK)]
    if missing:
        raise Abort(
            f"hatchet engine binaries missing in {d}: {', '.join(missing)} "
            "(run: bash tools/engine/install.sh)"
        )
    return d


def _pg_bindir() -> Path:
    explicit = os.environ.get("MAGEFLOW_PG_BIN_DIR")
    candidates = [Path(explicit)] if explicit else []
    candidates += sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for c in candidates:
        if all(os.access(c / b, os.X_OK) for b in ("initdb", "postgres", "createdb")):
            return c
    raise Abort(
        "PostgreSQL server binaries (initdb, postgres) not found; install Debian's "
        "postgresql package (bash tools/engine/install.sh) or set MAGEFLOW_PG_BIN_DIR, "
        "or pass -database-url"
    )


def _pg_ready(data: Path) -> bool:
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
    except OSError:
        return False
    return len(lines) >= 8 and lines[7].strip() == "ready"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return 200 <= int(r.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload))
    return claims


def _killpg(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _dump_tail(path: Path, n: int = 60) -> None:
    with contextlib.suppress(OSError):
        lines = path.read_text(errors="replace").splitlines()[-n:]
        print(f"---- last {len(lines)} lines of {path} ----", file=sys.stderr)
        print("\n".join(lines), file=sys.stderr)
        print("----", file=sys.stderr, flush=True)


def _write_atomic(path: Path, data: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".handshake-", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def _signals(sidecar: Sidecar) -> Iterator[None]:
    def handler(signum: int, _frame: object) -> None:
        sidecar.request_stop(f"received {signal.Signals(signum).name}")

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _watch_stdin(sidecar: Sidecar) -> None:
    def reader() -> None:
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        sidecar.request_stop("stdin closed")

    threading.Thread(target=reader, name="stdin-watch", daemon=True).start()


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="sidecar.py",
        description="hatchet-embedded compatible sidecar for MageFlow tests",
        allow_abbrev=False,
    )

    def flag(name: str, **kw: Any) -> None:
        p.add_argument(f"-{name}", f"--{name}", **kw)

    flag("handshake-file", dest="handshake_file", required=True)
    flag("database-url", dest="database_url")
    flag("grpc-port", dest="grpc_port", type=int)
    flag("api-port", dest="api_port", type=int)
    flag("no-api", dest="no_api", action="store_true")
    flag("no-migrations", dest="no_migrations", action="store_true")
    flag("log-level", dest="log_level")
    flag("rabbitmq-url", dest="rabbitmq_url")
    flag("postgres-data-dir", dest="postgres_data_dir")
    flag(
        "ignore-stdin",
        dest="ignore_stdin",
        action="store_true",
        help="do not stop when stdin closes (manual/background use)",
    )
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    sidecar = Sidecar(args)
    _Log.file = open(sidecar.log_path, "a", buffering=1)  # noqa: SIM115
    with _signals(sidecar):
        if not args.ignore_stdin:
            _watch_stdin(sidecar)
        try:
            handshake = sidecar.start()
            _write_atomic(Path(args.handshake_file), handshake)
            log(f"ready in {time.monotonic() - _t0:.1f}s; handshake in {args.handshake_file}")
            while not sidecar.stop.wait(0.5):
                sidecar.check()
            log(f"stopping: {sidecar.stop_reason}")
            return 0
        except Abort as e:
            sidecar.failed = not sidecar.stop.is_set()
            log(f"{'failed' if sidecar.failed else 'stopping'}: {e}")
            return 1 if sidecar.failed else 0
        except BaseException as e:
            sidecar.failed = True
            log(f"failed: {e!r}")
            raise
        finally:
            # a second signal must not interrupt the teardown
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(s, signal.SIG_IGN)
            t = time.monotonic()
            sidecar.teardown()
            log(f"stopped ({time.monotonic() - t:.1f}s)")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
