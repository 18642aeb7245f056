"""Issue 7 on the real engine: runs that end outside the wrapper are reconciled.

A worker of its own (``mf_reconcile_worker``) reconciles every second what
went quiet for 4 s; these tests watch it settle signatures by what Hatchet
says, and check the sign-time and dispatch-time contracts.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import mageflow
import pytest
from mageflow import (
    DispatchPendingError,
    DispatchRefusedError,
    MageflowValidationError,
    SignatureStatus,
    SwarmConfig,
)
from mageflow.engine import DispatchRequest, DispatchResult

from tests.e2e._engine import Engine
from tests.e2e._worker import WorkerProcess, wait_until
from tests.e2e.mf_reconcile_app import Nap, ReconcileApp, Step

pytestmark = pytest.mark.e2e

_S = SignatureStatus


def _worker(engine: Engine, redis_url: str, prefix: str, group: str) -> WorkerProcess:
    return WorkerProcess(
        "tests.e2e.mf_reconcile_worker",
        engine.worker_env(
            {"REDIS_URL": redis_url, "MAGEFLOW_E2E_PREFIX": prefix, "MAGEFLOW_E2E_GROUP": group}
        ),
        name=f"mf-reconcile-{group}",
    )


@pytest.fixture(scope="module")
def rc_prefix() -> str:
    return f"mfe2erc:{uuid.uuid4().hex[:8]}:"


@pytest.fixture(scope="module")
def rc_worker(hatchet_engine: Engine, redis_url: str, rc_prefix: str) -> Iterator[WorkerProcess]:
    worker = _worker(hatchet_engine, redis_url, rc_prefix, "main")
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
def rc_app_session(
    hatchet_engine: Engine, redis_url: str, rc_prefix: str, rc_worker: WorkerProcess
) -> ReconcileApp:
    return ReconcileApp(hatchet_engine.client(), redis_url, rc_prefix)


@pytest.fixture
def rc(rc_app_session: ReconcileApp) -> ReconcileApp:
    rc_app_session.mf.runtime.install()
    return rc_app_session


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:10]


async def status_of(key: str) -> SignatureStatus | None:
    sig = await mageflow.load_signature(key)
    return sig.status if sig else None


async def wait_status(key: str, status: SignatureStatus, timeout: float = 60) -> None:
    async def check() -> bool:
        return await status_of(key) == status

    await wait_until(check, timeout=timeout, message=f"{key} to become {status}")


async def wait_records(
    rc: ReconcileApp, task: str, tag: str, n: int = 1, timeout: float = 60
) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        got = await rc.records(task, tag)
        return got if len(got) >= n else None

    return await wait_until(check, timeout=timeout, message=f"{n} record(s) of {task}/{tag}")


async def field(rc: ReconcileApp, key: str, name: str) -> str | None:
    value = await rc.redis.hget(rc.mf.runtime.store.keys.sig(key), name)
    return value.decode() if isinstance(value, bytes) else value


async def error_of(rc: ReconcileApp, key: str) -> str:
    return str(json.loads(await field(rc, key, "err") or '""'))


async def in_pending_index(rc: ReconcileApp, key: str) -> bool:
    store = rc.mf.runtime.store
    return await rc.redis.zscore(store.keys.pending, store.keys.sig(key)) is not None


async def test_unfit_callback_fails_naming_the_field_and_nothing_stays_pending(
    rc: ReconcileApp, tag: str
) -> None:
    note = await mageflow.asign("e2e-rc-note")
    # its model needs customer_id, which the failed task's message lacks
    needs = await mageflow.asign("e2e-rc-needs", error_callbacks=[note])
    sig = await mageflow.asign("e2e-rc-fails", error_callbacks=[needs])
    await sig.aio_run_no_wait(Step(tag=tag))
    await wait_status(needs.key, _S.FAILED)
    assert "customer_id" in await error_of(rc, needs.key)
    assert await status_of(sig.key) is _S.FAILED
    await wait_records(rc, "e2e-rc-note", tag)
    await wait_status(note.key, _S.DONE)
    assert not await in_pending_index(rc, needs.key)
    await asyncio.sleep(6)  # past the reconciler's age: nothing is re-sent
    assert await rc.records("e2e-rc-needs", tag) == []
    assert len(await rc.records("e2e-rc-note", tag)) == 1
    assert len(await rc.records("e2e-rc-fails", tag)) == 1


async def test_plain_hatchet_task_is_refused_at_sign_time(rc: ReconcileApp) -> None:
    for task, name in ((rc.plain, "e2e-rc-plain"), (rc.plain_workflow, "e2e-rc-dag")):
        with pytest.raises(MageflowValidationError, match=name) as info:
            await mageflow.asign(task)
        assert info.value.field == "task"
    # the documented opt-in: fire and forget, no callbacks
    sig = await mageflow.asign(rc.plain, fire_and_forget=True)
    assert sig.task_name == "e2e-rc-plain"
    cb = await mageflow.asign("e2e-rc-note")
    with pytest.raises(MageflowValidationError, match="fire_and_forget"):
        await mageflow.asign(rc.plain, fire_and_forget=True, error_callbacks=[cb])


async def test_dispatch_refused_runs_nothing_and_changes_nothing(
    rc: ReconcileApp, tag: str
) -> None:
    sig = await mageflow.asign("e2e-rc-step")
    store = rc.mf.runtime.store
    before = await rc.redis.hgetall(store.keys.sig(sig.key))
    with pytest.raises(DispatchRefusedError):
        # Hatchet refuses a priority outside 1..3
        await sig.aio_run_no_wait(Step(tag=tag), priority=7)
    assert await rc.redis.hgetall(store.keys.sig(sig.key)) == before
    assert not await in_pending_index(rc, sig.key)
    await asyncio.sleep(6)
    assert await rc.records("e2e-rc-step", tag) == []
    assert await status_of(sig.key) is _S.PENDING


@pytest.mark.parametrize("reached", [False, True], ids=["lost", "reached"])
async def test_dispatch_outcome_unknown_runs_exactly_once_with_the_callers_options(
    rc: ReconcileApp, tag: str, reached: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = rc.mf.task_manager
    original = manager.dispatch
    calls = 0

    async def timeout_once(request: DispatchRequest) -> DispatchResult:
        nonlocal calls
        calls += 1
        if calls == 1:
            if reached:
                await original(request)
            raise TimeoutError("deadline exceeded")
        return await original(request)

    monkeypatch.setattr(manager, "dispatch", timeout_once)
    sig = await mageflow.asign("e2e-rc-step")
    with pytest.raises(DispatchPendingError, match="will run"):
        await sig.aio_run_no_wait(
            Step(tag=tag, n=3), priority=2, additional_metadata={"origin": tag}
        )
    # the worker's reconciler re-sends a lost dispatch with the caller's options
    (rec,) = await wait_records(rc, "e2e-rc-step", tag, timeout=90)
    await wait_status(sig.key, _S.DONE)
    assert rec["meta"]["origin"] == tag
    assert rec["priority"] == 2
    await asyncio.sleep(8)
    assert len(await rc.records("e2e-rc-step", tag)) == 1


async def test_running_member_cancelled_through_the_hatchet_api_settles_its_swarm(
    rc: ReconcileApp, tag: str
) -> None:
    note = await mageflow.asign("e2e-rc-note", tag=tag)
    napping = await mageflow.asign("e2e-rc-nap")
    quick = await mageflow.asign("e2e-rc-step")
    swarm = await mageflow.aswarm(
        [napping, quick], success_callbacks=[note], config=SwarmConfig(max_concurrency=2)
    )
    await swarm.aio_run_no_wait({"tag": tag})
    await swarm.close_swarm()
    await wait_records(rc, "e2e-rc-nap-start", tag)
    await wait_status(quick.key, _S.DONE)
    run_id = await field(rc, napping.key, "r")
    assert run_id
    await rc.mf.runs.aio_cancel(run_id)
    await wait_status(napping.key, _S.CANCELED, timeout=90)
    assert "cancelled in the engine" in await error_of(rc, napping.key)
    await wait_status(swarm.key, _S.DONE)
    await wait_records(rc, "e2e-rc-note", tag)
    await asyncio.sleep(6)
    assert len(await rc.records("e2e-rc-note", tag)) == 1
    assert len(await rc.records("e2e-rc-nap-start", tag)) == 1  # no re-send
    assert await status_of(napping.key) is _S.CANCELED


async def test_queued_chain_step_cancelled_through_the_hatchet_api_fails_its_chain(
    rc: ReconcileApp, tag: str
) -> None:
    # a run of the same tag holds the task's only concurrency slot for the tag
    blocker = await mageflow.asign("e2e-rc-nap")
    await blocker.aio_run_no_wait(Nap(tag=tag, seconds=120))
    await wait_records(rc, "e2e-rc-nap-start", tag)
    note = await mageflow.asign("e2e-rc-note", tag=f"{tag}-chain")
    queued = await mageflow.asign("e2e-rc-nap")
    after = await mageflow.asign("e2e-rc-step")
    chain = await mageflow.achain([queued, after], error=[note])
    await chain.aio_run_no_wait(Nap(tag=tag, seconds=1))

    async def engine_run() -> str | None:
        return await field(rc, queued.key, "er")

    run_id = await wait_until(engine_run, timeout=30, message="the queued step's run id")
    await rc.mf.runs.aio_cancel(run_id)
    await wait_status(queued.key, _S.CANCELED, timeout=90)
    await wait_status(chain.key, _S.FAILED)
    await wait_records(rc, "e2e-rc-note", f"{tag}-chain")
    blocker_run = await field(rc, blocker.key, "r")
    assert blocker_run
    await rc.mf.runs.aio_cancel(blocker_run)
    await wait_status(blocker.key, _S.CANCELED, timeout=90)
    await asyncio.sleep(6)
    assert len(await rc.records("e2e-rc-nap-start", tag)) == 1  # the queued one never ran
    assert len(await rc.records("e2e-rc-note", f"{tag}-chain")) == 1
    assert await status_of(after.key) is _S.SKIPPED  # never reached
    assert await status_of(queued.key) is _S.CANCELED


async def test_worker_killed_on_the_last_attempt_fails_once_via_the_reconciler(
    rc: ReconcileApp, tag: str, hatchet_engine: Engine, redis_url: str, rc_prefix: str
) -> None:
    doomed = _worker(hatchet_engine, redis_url, rc_prefix, "doomed")
    doomed.start()
    try:
        note = await mageflow.asign("e2e-rc-note", tag=f"{tag}-err")
        sig = await mageflow.asign("e2e-rc-doomed", error_callbacks=[note])
        await sig.aio_run_no_wait(Nap(tag=tag, seconds=60))
        await wait_records(rc, "e2e-rc-doomed", tag)
        doomed.kill()
        await wait_status(sig.key, _S.FAILED, timeout=120)
        assert "in the engine" in await error_of(rc, sig.key)
        await wait_records(rc, "e2e-rc-note", f"{tag}-err")
        await asyncio.sleep(6)
        assert len(await rc.records("e2e-rc-note", f"{tag}-err")) == 1
        assert len(await rc.records("e2e-rc-doomed", tag)) == 1
    finally:
        doomed.stop()
