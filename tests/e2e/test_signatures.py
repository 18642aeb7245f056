"""Signatures, callbacks and lifecycle on a real Hatchet engine."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import mageflow
import pytest
from mageflow import (
    MageflowValidationError,
    PauseActionTypes,
    SignatureLockedError,
    SignatureStatus,
    StoreError,
    TaskSignature,
)

from tests.e2e._worker import wait_until
from tests.e2e.mf_app import App, Echo, Flaky, Order, Sleep, SlowFlaky

pytestmark = pytest.mark.e2e


async def status_of(key: str) -> SignatureStatus | None:
    sig = await mageflow.load_signature(key)
    return sig.status if sig else None


async def wait_status(key: str, status: SignatureStatus, timeout: float = 60) -> None:
    async def check() -> bool:
        return await status_of(key) == status

    await wait_until(check, timeout=timeout, message=f"{key} to become {status}")


async def wait_records(
    app: App, task: str, tag: str, n: int = 1, timeout: float = 60
) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        got = await app.records(task, tag)
        return got if len(got) >= n else None

    return await wait_until(check, timeout=timeout, message=f"{n} record(s) of {task}/{tag}")


async def runs_for(app: App, key: str) -> list[Any]:
    listed = await app.mf.runs.aio_list(
        additional_metadata={"mageflow_signature_key": key}, only_tasks=True
    )
    return list(listed.rows or [])


async def wait_runs_cancelled(app: App, key: str, message: str = "hatchet run cancelled") -> None:
    """Wait until every engine run of signature ``key`` reads CANCELLED."""

    async def cancelled() -> bool:
        runs = await runs_for(app, key)
        return bool(runs) and all(str(r.status).endswith("CANCELLED") for r in runs)

    await wait_until(cancelled, timeout=60, message=message)


async def test_sign_by_name_object_and_client(app: App, tag: str) -> None:
    by_name = await mageflow.asign("e2e-charge")
    by_object = await mageflow.sign(app.tasks["charge"])
    by_client = await app.mf.asign("e2e-charge", tag=tag)
    assert by_object.task_name == by_name.task_name == "e2e-charge"
    assert by_name.model_validators_path == "tests.e2e.mf_app:Order"
    assert by_name.model_validators is Order
    for i, sig in enumerate((by_name, by_object, by_client)):
        await sig.aio_run_no_wait(Order(order_id=i, tag=tag))
    recs = await wait_records(app, "e2e-charge", tag, 3)
    assert sorted(r["input"]["order_id"] for r in recs) == [0, 1, 2]
    for sig in (by_name, by_object, by_client):
        await wait_status(sig.key, SignatureStatus.DONE)


async def test_run_is_findable_by_signature_key(app: App, tag: str) -> None:
    sig = await app.mf.asign("e2e-charge")
    await sig.aio_run_no_wait(Order(order_id=1, tag=tag))
    await wait_status(sig.key, SignatureStatus.DONE)
    runs = await wait_until(lambda: runs_for(app, sig.key), timeout=30)
    assert len(runs) == 1
    assert runs[0].additional_metadata["mageflow_signature_key"] == sig.key


async def test_success_callbacks_receive_return_value(app: App, tag: str) -> None:
    short = await mageflow.asign("e2e-receipt", tag=f"{tag}-short")
    annotated = await mageflow.asign("e2e-receipt-annotated", tag=f"{tag}-ann")
    default = await mageflow.asign("e2e-receipt-default", tag=f"{tag}-default")
    main = await mageflow.asign("e2e-charge", success_callbacks=[short, annotated, default.key])
    await main.aio_run_no_wait(Order(order_id=7, amount=2.5, tag=tag))
    expected = {"order_id": 7, "total": 5.0}
    for task, suffix in (
        ("e2e-receipt", "short"),
        ("e2e-receipt-annotated", "ann"),
        ("e2e-receipt-default", "default"),
    ):
        recs = await wait_records(app, task, f"{tag}-{suffix}")
        assert recs[0]["value"] == expected
    for sig in (short, annotated, default):
        await wait_status(sig.key, SignatureStatus.DONE)
    for task, suffix in (
        ("e2e-receipt", "short"),
        ("e2e-receipt-annotated", "ann"),
        ("e2e-receipt-default", "default"),
    ):
        assert len(await app.records(task, f"{tag}-{suffix}")) == 1


async def test_error_callback_once_after_final_retry(app: App, tag: str) -> None:
    on_error = await mageflow.asign("e2e-on-error", reason="card declined")
    ok = await mageflow.asign("e2e-receipt", tag=f"{tag}-never")
    sig = await mageflow.asign(
        "e2e-always-fail", error_callbacks=[on_error], success_callbacks=[ok]
    )
    await sig.aio_run_no_wait(Order(order_id=3, amount=1.0, tag=tag))
    recs = await wait_records(app, "e2e-on-error", tag, timeout=90)
    attempts = await app.records("e2e-always-fail", tag)
    assert len(attempts) == 3  # retries=2
    assert recs[0]["at"] >= max(a["at"] for a in attempts)
    assert recs[0]["input"] == {"order_id": 3, "amount": 1.0, "tag": tag, "reason": "card declined"}
    await wait_status(on_error.key, SignatureStatus.DONE)
    assert await status_of(sig.key) == SignatureStatus.FAILED
    assert await status_of(ok.key) == SignatureStatus.SKIPPED  # the branch not taken
    assert len(await app.records("e2e-on-error", tag)) == 1


@pytest.mark.parametrize(("task", "attempts"), [("e2e-non-retryable", 1), ("e2e-timeout", 3)])
async def test_error_callback_after_non_retryable_and_timeout(
    app: App, tag: str, task: str, attempts: int
) -> None:
    # NonRetryable ends the run at once; a timeout is retried like any failure
    # (retries=2: three attempts) and the last attempt's timeout fails it
    on_error = await mageflow.asign("e2e-on-error")
    sig = await mageflow.asign(task, error_callbacks=[on_error])
    await sig.aio_run_no_wait(Order(order_id=4, tag=tag))
    await wait_records(app, "e2e-on-error", tag, timeout=90)
    await wait_status(sig.key, SignatureStatus.FAILED)
    assert len(await app.records(task, tag)) == attempts
    await wait_status(on_error.key, SignatureStatus.DONE)
    assert len(await app.records("e2e-on-error", tag)) == 1


async def test_timeout_with_retries_left_is_retried(app: App, tag: str) -> None:
    # issue 7 case 7: a timeout used to be final for signature runs
    ok = await mageflow.asign("e2e-receipt", tag=tag)
    err = await mageflow.asign("e2e-on-error")
    sig = await mageflow.asign("e2e-timeout-once", success_callbacks=[ok], error_callbacks=[err])
    await sig.aio_run_no_wait(Order(order_id=5, amount=7, tag=tag))
    recs = await wait_records(app, "e2e-receipt", tag, timeout=90)
    assert recs[0]["value"] == {"order_id": 5, "total": 7}
    await wait_status(sig.key, SignatureStatus.DONE)
    assert [r["attempt"] for r in await app.records("e2e-timeout-once", tag)] == [1, 2]
    await wait_status(ok.key, SignatureStatus.DONE)
    assert len(await app.records("e2e-receipt", tag)) == 1
    # the error callback never runs: skipped once the parent succeeded
    assert await status_of(err.key) == SignatureStatus.SKIPPED


async def test_retry_then_success_fires_only_success(app: App, tag: str) -> None:
    ok = await mageflow.asign("e2e-receipt", tag=tag)
    err = await mageflow.asign("e2e-on-error")
    sig = await mageflow.asign("e2e-flaky", success_callbacks=[ok], error_callbacks=[err])
    await sig.aio_run_no_wait(Flaky(fail_times=2, tag=tag))
    recs = await wait_records(app, "e2e-receipt", tag, timeout=90)
    assert recs[0]["value"] == {"attempts": 3}
    assert len(await app.records("e2e-flaky", tag)) == 3
    await wait_status(ok.key, SignatureStatus.DONE)
    assert await status_of(err.key) == SignatureStatus.SKIPPED  # the branch not taken


async def test_suspend_before_run_then_resume_runs_once(app: App, tag: str) -> None:
    ok = await mageflow.asign("e2e-receipt", tag=tag)
    sig = await mageflow.asign("e2e-charge", success_callbacks=[ok])
    await sig.suspend()
    await sig.aio_run_no_wait(Order(order_id=11, tag=tag))
    assert await status_of(sig.key) == SignatureStatus.SUSPENDED
    assert await runs_for(app, sig.key) == []  # parked, nothing reached the engine
    await mageflow.resume(sig.key)
    recs = await wait_records(app, "e2e-charge", tag)
    assert recs[0]["input"]["order_id"] == 11
    await wait_records(app, "e2e-receipt", tag)
    await wait_status(ok.key, SignatureStatus.DONE)
    assert len(await app.records("e2e-charge", tag)) == 1
    assert len(await app.records("e2e-receipt", tag)) == 1


async def test_pause_and_pause_task_both_types(app: App, tag: str) -> None:
    a = await mageflow.asign("e2e-echo")
    await mageflow.pause(a.key)
    assert await status_of(a.key) == SignatureStatus.SUSPENDED
    await mageflow.resume_task(a.key)
    assert await status_of(a.key) == SignatureStatus.PENDING

    b = await mageflow.asign("e2e-sleep", tag=tag)
    await b.aio_run_no_wait(Sleep(seconds=60))
    await wait_records(app, "e2e-sleep-start", tag)
    await mageflow.pause(b.key, PauseActionTypes.INTERRUPT)
    assert await status_of(b.key) == SignatureStatus.INTERRUPTED

    c = await mageflow.asign("e2e-echo")
    await c.pause_task(PauseActionTypes.SUSPEND)
    assert c.status == SignatureStatus.SUSPENDED
    await c.pause_task(PauseActionTypes.INTERRUPT)
    assert await status_of(c.key) == SignatureStatus.INTERRUPTED


async def test_interrupt_running_task_then_resume(app: App, tag: str) -> None:
    ok = await mageflow.asign("e2e-receipt", tag=tag)
    sig = await mageflow.asign("e2e-sleep", success_callbacks=[ok], tag=tag)
    await sig.aio_run_no_wait(Sleep(seconds=45))
    await wait_records(app, "e2e-sleep-start", tag)
    await sig.interrupt()
    assert await status_of(sig.key) == SignatureStatus.INTERRUPTED

    await wait_runs_cancelled(app, sig.key, "hatchet run cancelled")
    assert await app.records("e2e-sleep-end", tag) == []
    assert await status_of(ok.key) == SignatureStatus.PENDING

    # a shorter sleep bound now reaches the replayed run
    await sig.kwargs.aupdate(seconds=0.2)
    await sig.resume()
    await wait_records(app, "e2e-sleep-end", tag, timeout=60)
    await wait_records(app, "e2e-receipt", tag)
    assert len(await app.records("e2e-sleep-start", tag)) == 2
    await wait_status(sig.key, SignatureStatus.DONE)


async def test_lock_task_holds_status_changes(app: App) -> None:
    sig = await mageflow.asign("e2e-echo")
    outcome: list[BaseException | None] = []

    async def contender() -> None:
        try:
            await mageflow.pause(sig.key)
            outcome.append(None)
        except SignatureLockedError as exc:
            outcome.append(exc)

    async with mageflow.lock_task(sig.key) as locked:
        assert locked.key == sig.key
        # a fresh context: the contender does not hold the lock
        await asyncio.get_running_loop().create_task(contender(), context=contextvars.Context())
        assert await status_of(sig.key) == SignatureStatus.PENDING
    assert isinstance(outcome[0], SignatureLockedError)
    assert sig.key in str(outcome[0])
    await mageflow.pause(sig.key)
    assert await status_of(sig.key) == SignatureStatus.SUSPENDED


async def test_with_ctx_with_signature_and_stagger(app: App, tag: str) -> None:
    ctx_sig = await mageflow.asign("e2e-ctx")
    sig_sig = await mageflow.asign("e2e-sig")
    stag_sig = await mageflow.asign("e2e-stagger")
    for s in (ctx_sig, sig_sig, stag_sig):
        await s.aio_run_no_wait(Echo(tag=tag))
    ctx_rec = await wait_records(app, "e2e-ctx", tag)
    assert ctx_rec[0]["ctx"] == "Context"
    sig_rec = await wait_records(app, "e2e-sig", tag)
    assert sig_rec[0]["key"] == sig_sig.key and sig_rec[0]["name"] == "e2e-sig"
    stag_rec = await wait_records(app, "e2e-stagger", tag)
    assert stag_rec[0]["key"] == stag_sig.key
    for s in (ctx_sig, sig_sig, stag_sig):
        await wait_status(s.key, SignatureStatus.DONE)


async def test_options_above_mf_task_and_stagger_logs_to_the_run_log(app: App, tag: str) -> None:
    sig = await mageflow.asign("e2e-above")
    await sig.aio_run_no_wait(Echo(tag=tag))
    rec = await wait_records(app, "e2e-above", tag)
    assert rec[0]["ctx"] == "Context" and rec[0]["key"] == sig.key
    await wait_status(sig.key, SignatureStatus.DONE)
    staggered = await mageflow.asign("e2e-stagger")
    await staggered.aio_run_no_wait(Echo(tag=tag))
    await wait_status(staggered.key, SignatureStatus.DONE)

    async def stagger_line(key: str) -> str | None:
        for row in await runs_for(app, key):
            logs = await app.mf.logs.aio_list(task_run_id=row.task_external_id)
            for line in logs.rows or []:
                if "stagger_execution delays" in line.message:
                    return str(line.message)
        return None

    for key in (sig.key, staggered.key):
        line = await wait_until(
            lambda key=key: stagger_line(key), timeout=30, message=f"stagger log of {key}"
        )
        assert line is not None and "by " in line


async def test_direct_hatchet_run_returns_plain_result(app: App, tag: str) -> None:
    result = await app.tasks["charge"].aio_run(Order(order_id=5, amount=4.0, tag=tag))
    assert result == {"order_id": 5, "total": 8.0}
    assert len(await app.records("e2e-charge", tag)) == 1
    staggered = await app.tasks["stagger"].aio_run(Echo(tag=f"{tag}-s"))
    assert staggered == {"ok": True}


async def test_kwargs_aupdate_before_run(app: App, tag: str) -> None:
    sig = await mageflow.asign("e2e-echo", note="first")
    await sig.kwargs.aupdate(note="second", extra=3)
    assert (await mageflow.load_signature(sig.key)).kwargs == {"note": "second", "extra": 3}
    await sig.aio_run_no_wait(Echo(tag=tag, note="from message"))
    rec = await wait_records(app, "e2e-echo", tag)
    assert rec[0]["input"] == {"tag": tag, "note": "second", "extra": 3}


async def test_remove_and_delete_signature(app: App) -> None:
    ok = await mageflow.asign("e2e-receipt", tag="x")
    err = await mageflow.asign("e2e-on-error")
    sig = await mageflow.asign("e2e-charge", success_callbacks=[ok], error_callbacks=[err])
    await sig.remove()
    for key in (sig.key, ok.key, err.key):
        assert await mageflow.load_signature(key) is None
    other = await mageflow.asign("e2e-echo")
    await TaskSignature.delete_signature(other.key)
    assert await mageflow.load_signature(other.key) is None


async def test_bad_message_rejected_before_dispatch(app: App) -> None:
    sig = await mageflow.asign("e2e-charge")
    before = await app.redis.hgetall(app.mf.runtime.store.keys.sig(sig.key))
    with pytest.raises(MageflowValidationError) as info:
        await sig.aio_run_no_wait({"order_id": "not a number"})
    assert info.value.field == "order_id"
    assert "order_id" in str(info.value)
    assert await app.redis.hgetall(app.mf.runtime.store.keys.sig(sig.key)) == before
    assert await runs_for(app, sig.key) == []


async def test_redis_unreachable_is_a_clear_error(app: App, hatchet_engine: Any) -> None:
    from mageflow import Mageflow

    broken = Mageflow(hatchet_engine.client(), "redis://127.0.0.1:1/0")
    try:
        with pytest.raises(StoreError, match="unreachable"):
            await broken.asign("e2e-charge")
    finally:
        app.mf.runtime.install()


async def test_durable_task_drives_signature_and_callbacks(app: App, tag: str) -> None:
    ok = await mageflow.asign("e2e-receipt", tag=tag)
    sig = await mageflow.asign("e2e-durable", success_callbacks=[ok])
    await sig.aio_run_no_wait(Echo(tag=tag))
    rec = await wait_records(app, "e2e-durable", tag)
    assert rec[0]["key"] == sig.key
    receipt = await wait_records(app, "e2e-receipt", tag)
    assert receipt[0]["value"] == {"durable": tag}
    await wait_status(sig.key, SignatureStatus.DONE)


async def test_retry_parked_by_suspension_does_not_consume_retries(app: App, tag: str) -> None:
    # retries=1: two attempts in all. The first fails while the signature is
    # suspended; the retry arrives parked and ends its run without running the
    # body. Resume dispatches a fresh run with both attempts available again.
    ok = await mageflow.asign("e2e-receipt", tag=tag)
    err = await mageflow.asign("e2e-on-error")
    sig = await mageflow.asign("e2e-slow-flaky", success_callbacks=[ok], error_callbacks=[err])
    await sig.aio_run_no_wait(SlowFlaky(fail_times=1, seconds=2.0, tag=tag))
    await wait_records(app, "e2e-slow-flaky", tag)
    await sig.suspend()

    async def parked() -> bool:
        raw = await app.redis.hgetall(app.mf.runtime.store.keys.sig(sig.key))
        return "pm" in raw

    await wait_until(parked, timeout=60, message="the retry parked")
    assert len(await app.records("e2e-slow-flaky", tag)) == 1  # the retry ran no body
    assert await status_of(sig.key) == SignatureStatus.SUSPENDED
    await sig.resume()
    receipt = await wait_records(app, "e2e-receipt", tag, timeout=90)
    assert receipt[0]["value"] == {"attempt": 2}
    runs = {r["run"] for r in await app.records("e2e-slow-flaky", tag)}
    assert len(runs) == 2  # the parked run ended; resume started a new one
    assert await status_of(err.key) == SignatureStatus.SKIPPED  # the branch not taken


async def test_worker_recovers_a_dispatch_lost_before_the_engine(app: App, tag: str) -> None:
    # The caller died between the atomic claim and the engine call: the
    # claim is in Redis, no run exists. The worker's recovery loop sends it.
    sig = await mageflow.asign("e2e-echo")
    store = app.mf.runtime.store
    assert await store.dispatch(sig.key, {"tag": tag, "note": "lost"}, "lost-1", "") == "dispatch"
    assert await runs_for(app, sig.key) == []
    rec = await wait_records(app, "e2e-echo", tag, timeout=60)
    assert rec[0]["input"]["note"] == "lost"
    await wait_status(sig.key, SignatureStatus.DONE)
    assert len(await app.records("e2e-echo", tag)) == 1


async def test_child_run_started_inside_a_signature_task_runs(app: App, tag: str) -> None:
    sig = await mageflow.asign("e2e-spawns-child")
    await sig.aio_run_no_wait(Echo(tag=tag))
    rec = await wait_records(app, "e2e-echo", tag)
    assert rec[0]["input"]["note"] == "child"
    await wait_status(sig.key, SignatureStatus.DONE)
    done = await mageflow.load_signature(sig.key)
    assert done is not None


async def test_a_flow_built_with_thirdmagic_alone_is_submitted_and_runs(app: App, tag: str) -> None:
    """Issue 11.6 on the real engine: JSON from a thirdmagic-only service, stored and run here."""
    from thirdmagic import FlowSpec
    from thirdmagic import TaskSignature as PlainSignature

    receipt = PlainSignature(task_name="e2e-receipt", kwargs={"tag": tag})
    failed = PlainSignature(task_name="e2e-on-error")
    charge = PlainSignature(
        task_name="e2e-charge",
        model_validators=Order,
        success_callbacks=[receipt],
        error_callbacks=[failed],
    )
    body = FlowSpec.of(charge).to_json()  # what the other service sends
    root = await mageflow.submit(body)
    await root.aio_run_no_wait(Order(order_id=9, amount=2.0, tag=tag))
    recs = await wait_records(app, "e2e-receipt", tag)
    assert recs[0]["value"] == {"order_id": 9, "total": 4.0}
    await wait_status(root.key, SignatureStatus.DONE)
    await wait_status(failed.key, SignatureStatus.SKIPPED)  # issue 11.8 on the engine
