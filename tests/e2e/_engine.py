"""Start a real Hatchet engine for end-to-end tests.

The engine is started through hatchet-sdk's own embedded path
(``hatchet_sdk.embedded.start_embedded_sidecar``) with ``tools/engine/sidecar.py``
as the sidecar binary; that script runs a throwaway PostgreSQL plus the classic
Hatchet binaries built by ``tools/engine/build-hatchet.sh`` (install everything
with ``bash tools/engine/install.sh``). All ``HATCHET_CLIENT_EMBEDDED_*`` variables
are honoured, e.g. ``HATCHET_CLIENT_EMBEDDED_DATABASE_URL`` to use an existing
PostgreSQL or ``HATCHET_CLIENT_EMBEDDED_BINARY_PATH`` for another sidecar.

Wiring into a conftest (plain functions, so any fixture layout works)::

    @pytest.fixture(scope="session")
    def hatchet_engine():
        engine = start_engine_or_skip()
        with engine.exported_env():      # Hatchet() built from env now reaches it
            yield engine
        engine.stop()

If the engine cannot start, ``start_engine_or_skip`` raises when ``CI`` is set and
skips otherwise.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from hatchet_sdk import Hatchet
    from hatchet_sdk.config import ClientConfig
    from hatchet_sdk.embedded import EmbeddedSidecar, Handshake

REPO_ROOT = Path(__file__).resolve().parents[2]
SIDECAR = REPO_ROOT / "tools" / "engine" / "sidecar.py"
INSTALL_HINT = "run `bash tools/engine/install.sh` (see its output for the env vars)"
DEFAULT_ENGINE_TAG = "v0.105.0"
ENGINE_BINARIES = ("hatchet-migrate", "hatchet-admin", "hatchet-lite")


def engine_bin_dir() -> Path:
    """Where tools/engine/build-hatchet.sh puts the engine binaries."""
    explicit = os.environ.get("MAGEFLOW_ENGINE_BIN_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("MAGEFLOW_ENGINE_DIR") or str(
        Path.home() / ".cache" / "mageflow" / "engine"
    )
    return Path(base) / os.environ.get("HATCHET_ENGINE_TAG", DEFAULT_ENGINE_TAG) / "bin"


def _sidecar_binary() -> str | None:
    """The sidecar to use: HATCHET_CLIENT_EMBEDDED_BINARY_PATH, else ours if it can run."""
    explicit = os.environ.get("HATCHET_CLIENT_EMBEDDED_BINARY_PATH")
    if explicit:
        return explicit
    bindir = engine_bin_dir()
    if all(os.access(bindir / b, os.X_OK) for b in ENGINE_BINARIES):
        return str(SIDECAR)
    return None


def engine_unavailable_reason() -> str | None:
    """None if an engine can be started here, else why not (cheap checks only)."""
    binary = _sidecar_binary()
    if binary is None:
        return f"Hatchet engine binaries not found in {engine_bin_dir()}"
    if not os.access(binary, os.X_OK):
        return f"sidecar {binary} is not executable"
    if Path(binary).resolve() == SIDECAR.resolve() and not os.environ.get(
        "HATCHET_CLIENT_EMBEDDED_DATABASE_URL"
    ):
        pg = [Path(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"))]
        if os.environ.get("MAGEFLOW_PG_BIN_DIR"):
            pg.append(Path(os.environ["MAGEFLOW_PG_BIN_DIR"]))
        if shutil.which("initdb"):
            pg.append(Path(shutil.which("initdb") or "").parent)
        if not any((d / "initdb").exists() and (d / "postgres").exists() for d in pg):
            return "PostgreSQL server binaries (initdb/postgres) not found"
    return None


def engine_available() -> bool:
    return engine_unavailable_reason() is None


@dataclass
class Engine:
    """A running engine: its handshake and the env that clients/workers need."""

    handshake: Handshake
    env: dict[str, str]
    sidecar: EmbeddedSidecar | None = field(default=None, repr=False)

    @property
    def token(self) -> str:
        return self.handshake.token

    @property
    def grpc_address(self) -> str:
        return self.handshake.grpc_address

    @property
    def api_url(self) -> str:
        return self.handshake.api_url

    def client_config(self, namespace: str | None = None) -> ClientConfig:
        from hatchet_sdk.config import ClientConfig, ClientTLSConfig

        return ClientConfig(
            token=self.handshake.token,
            tenant_id=self.handshake.tenant_id,
            host_port=self.handshake.grpc_address,
            server_url=self.handshake.api_url,
            tls_config=ClientTLSConfig(strategy="none"),
            namespace=namespace
            if namespace is not None
            else self.env.get("HATCHET_CLIENT_NAMESPACE", ""),
        )

    def client(self, namespace: str | None = None) -> Hatchet:
        """A Hatchet client for this engine (independent of os.environ)."""
        from hatchet_sdk import Hatchet

        return Hatchet(config=self.client_config(namespace))

    def worker_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """os.environ + this engine's client env (+ extra), for worker subprocesses."""
        env = dict(os.environ)
        env.update(self.env)
        env.update(extra or {})
        return env

    @contextlib.contextmanager
    def exported_env(self) -> Iterator[None]:
        """Put the client env into os.environ for the duration (restored afterwards)."""
        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def stop(self) -> None:
        if self.sidecar is not None:
            self.sidecar.stop()


def client_env(handshake: Handshake, namespace: str | None = None) -> dict[str, str]:
    """The variables a plain ``Hatchet()`` (in any process) needs to reach the engine."""
    env = {
        "HATCHET_CLIENT_TOKEN": handshake.token,
        "HATCHET_CLIENT_TENANT_ID": handshake.tenant_id,
        "HATCHET_CLIENT_HOST_PORT": handshake.grpc_address,
        "HATCHET_CLIENT_SERVER_URL": handshake.api_url,
        "HATCHET_CLIENT_TLS_STRATEGY": "none",
        # lets `Hatchet.from_embedded()` in a child process join this engine
        "HATCHET_EMBEDDED_HANDSHAKE": handshake.model_dump_json(),
    }
    if namespace:
        env["HATCHET_CLIENT_NAMESPACE"] = namespace
    return env


def start_engine(namespace: str | None = None, ready_timeout: float = 180) -> Engine:
    """Start an engine via hatchet-sdk's embedded sidecar path; raises if it cannot."""
    from hatchet_sdk.config import EmbeddedHatchetConfig
    from hatchet_sdk.embedded import start_embedded_sidecar

    binary = _sidecar_binary()
    if binary is None:
        raise RuntimeError(f"no Hatchet engine: binaries not found in {engine_bin_dir()}")
    # every other field (database_url, ports, log_level, ...) comes from
    # HATCHET_CLIENT_EMBEDDED_* as usual
    options = EmbeddedHatchetConfig(binary_path=binary)
    if "HATCHET_CLIENT_EMBEDDED_READY_TIMEOUT_SECONDS" not in os.environ:
        options.ready_timeout_seconds = ready_timeout
    sidecar = start_embedded_sidecar(options)
    return Engine(
        handshake=sidecar.handshake,
        env=client_env(sidecar.handshake, namespace),
        sidecar=sidecar,
    )


def engine_unavailable(reason: str) -> None:
    """Fail (CI) or skip (developer machine) because the engine cannot run."""
    msg = f"Hatchet engine unavailable: {reason}"
    if os.environ.get("CI"):
        raise RuntimeError(msg)
    pytest.skip(f"{msg}; to run e2e tests, {INSTALL_HINT}")


def start_engine_or_skip(namespace: str | None = None) -> Engine:
    """start_engine(), but skip (or, with CI set, raise) when no engine can start."""
    reason = engine_unavailable_reason()
    if reason is not None:
        engine_unavailable(reason)
    try:
        return start_engine(namespace)
    except Exception as e:
        engine_unavailable(f"engine failed to start: {e}")
        raise  # unreachable: engine_unavailable raises or skips
