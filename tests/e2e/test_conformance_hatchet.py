"""The Hatchet adapter passes the adapter conformance kit on the real engine."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from mageflow import MageflowConfig, MageflowRuntime
from mageflow.testing.conformance import TaskManagerConformance
from mageflow_hatchet import Mageflow
from thirdmagic.backend import current_backend, set_backend

from tests.e2e._engine import Engine
from tests.e2e._worker import WorkerProcess


@pytest.fixture(scope="module")
def conformance_prefix() -> str:
    return f"mfe2econf:{uuid.uuid4().hex[:8]}:"


@pytest.fixture(scope="module")
def conformance_worker(
    hatchet_engine: Engine, redis_url: str, conformance_prefix: str
) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(
        "tests.e2e.conformance_worker",
        hatchet_engine.worker_env(
            {"REDIS_URL": redis_url, "MAGEFLOW_E2E_PREFIX": conformance_prefix}
        ),
        name="mf-conformance",
    )
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
def conformance_client(
    hatchet_engine: Engine,
    redis_url: str,
    conformance_prefix: str,
    conformance_worker: WorkerProcess,
) -> Mageflow:
    return Mageflow(
        hatchet_engine.client(), redis_url, config=MageflowConfig(key_prefix=conformance_prefix)
    )


class TestHatchetConformance(TaskManagerConformance):
    # Hatchet accepts a run of any task name and queues it until a worker
    # registers that task, so an unknown name is not refused at dispatch.
    refuses_unknown_tasks = False

    @pytest.fixture
    def conformance_runtime(self, conformance_client: Mageflow) -> Iterator[MageflowRuntime]:
        saved = current_backend()
        conformance_client.runtime.install()
        try:
            yield conformance_client.runtime
        finally:
            set_backend(saved)

    @pytest.fixture
    def conformance_timeout(self) -> float:
        return 60.0
