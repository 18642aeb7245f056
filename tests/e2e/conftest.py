from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.e2e._engine import Engine, start_engine_or_skip
from tests.e2e._worker import WorkerProcess
from tests.e2e.mf_app import App
from tests.e2e.mf_container_app import ContainerApp


@pytest.fixture(scope="session")
def hatchet_engine() -> Iterator[Engine]:
    engine = start_engine_or_skip()
    with engine.exported_env():
        yield engine
    engine.stop()


@pytest.fixture(scope="session")
def e2e_prefix() -> str:
    return f"mfe2e:{uuid.uuid4().hex[:8]}:"


@pytest.fixture(scope="session")
def mf_worker(hatchet_engine: Engine, redis_url: str, e2e_prefix: str) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(
        "tests.e2e.mf_worker",
        hatchet_engine.worker_env({"REDIS_URL": redis_url, "MAGEFLOW_E2E_PREFIX": e2e_prefix}),
        name="mf-worker",
    )
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def app_session(
    hatchet_engine: Engine, redis_url: str, e2e_prefix: str, mf_worker: WorkerProcess
) -> App:
    return App(hatchet_engine.client(), redis_url, e2e_prefix)


@pytest.fixture
def app(app_session: App) -> App:
    # Other test layers configure their own runtime; signature methods must
    # reach this one.
    app_session.mf.runtime.install()
    return app_session


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:10]


# -- chains and swarms (tests/e2e/test_containers.py) ------------------------


@pytest.fixture(scope="session")
def container_prefix() -> str:
    return f"mfe2ec:{uuid.uuid4().hex[:8]}:"


def container_worker_process(
    engine: Engine, redis_url: str, prefix: str, group: str
) -> WorkerProcess:
    return WorkerProcess(
        "tests.e2e.mf_container_worker",
        engine.worker_env(
            {
                "REDIS_URL": redis_url,
                "MAGEFLOW_E2E_PREFIX": prefix,
                "MAGEFLOW_E2E_GROUP": group,
            }
        ),
        name=f"mf-container-{group}",
    )


@pytest.fixture(scope="session")
def container_worker(
    hatchet_engine: Engine, redis_url: str, container_prefix: str
) -> Iterator[WorkerProcess]:
    worker = container_worker_process(hatchet_engine, redis_url, container_prefix, "main")
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def crash_worker(
    hatchet_engine: Engine, redis_url: str, container_prefix: str
) -> Iterator[WorkerProcess]:
    """A worker of its own (tasks ``e2e-ck-*``), for a test that SIGKILLs it."""
    worker = container_worker_process(hatchet_engine, redis_url, container_prefix, "crash")
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def container_app_session(
    hatchet_engine: Engine,
    redis_url: str,
    container_prefix: str,
    container_worker: WorkerProcess,
) -> ContainerApp:
    return ContainerApp(hatchet_engine.client(), redis_url, container_prefix)


@pytest.fixture
def capp(container_app_session: ContainerApp) -> ContainerApp:
    # Other tests install their own runtime; signature methods must reach this one.
    container_app_session.mf.runtime.install()
    return container_app_session
