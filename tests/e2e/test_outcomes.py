"""result / aio_run / error details / cancel / retry on a real Hatchet engine."""

from __future__ import annotations

import asyncio

import mageflow
import pytest
from mageflow import (
    InvalidTransitionError,
    SignatureCanceledError,
    SignatureFailedError,
    SignatureStatus,
)
from mageflow.engine import DISPATCH_ID_META, SIGNATURE_KEY_META

from tests.e2e.mf_app import App, Echo, Order, Sleep
from tests.e2e.test_signatures import status_of, wait_records, wait_runs_cancelled

pytestmark = pytest.mark.e2e


async def test_aio_run_returns_the_result(app: App, tag: str) -> None:
    sig = await mageflow.asign("e2e-echo")
    got = await sig.aio_run(Echo(tag=tag, note="hi"), timeout=60)
    assert got == {"tag": tag, "note": "hi", "extra": 0}
    assert await mageflow.result(sig.key, timeout=1) == got


async def test_failure_details_reach_result_and_the_signature(app: App, tag: str) -> None:
    sig = await mageflow.asign("e2e-non-retryable")
    with pytest.raises(SignatureFailedError) as info:
        await sig.aio_run(Order(order_id=1, tag=tag), timeout=60)
    error = info.value.error
    assert error is not None
    assert error.type.endswith("NonRetryableException")
    assert error.message == "do not retry"
    assert "Traceback" in error.traceback and error.signature_key == sig.key
    loaded = await mageflow.load_signature(sig.key)
    assert loaded is not None and loaded.error == error


async def test_cancel_a_running_task_cancels_the_hatchet_run(app: App, tag: str) -> None:
    ok = await mageflow.asign("e2e-receipt", tag=tag)
    bad = await mageflow.asign("e2e-on-error", tag=tag)
    sig = await mageflow.asign("e2e-sleep", success_callbacks=[ok], error_callbacks=[bad])
    await sig.aio_run_no_wait(Sleep(seconds=45, tag=tag))
    await wait_records(app, "e2e-sleep-start", tag)
    waiter = asyncio.create_task(mageflow.result(sig.key, timeout=60))
    await mageflow.cancel(sig.key)
    with pytest.raises(SignatureCanceledError):
        await waiter

    await wait_runs_cancelled(app, sig.key, "hatchet run cancelled")
    assert await app.records("e2e-sleep-end", tag) == []
    assert await status_of(ok.key) == SignatureStatus.PENDING
    assert await status_of(bad.key) == SignatureStatus.PENDING  # default: no error callbacks


async def test_a_run_arriving_for_a_cancelled_signature_skips_and_reads_cancelled(
    app: App, tag: str
) -> None:
    # The window this covers: a cancel that came before the dispatching worker
    # stored its run's engine id (run ids are recorded lazily), so the cancel
    # could not stop the queued run and the run still arrives.
    sig = await mageflow.asign("e2e-sleep")
    await mageflow.cancel(sig.key)
    await app.mf.runs.aio_create(
        "e2e-sleep",
        Sleep(seconds=45, tag=tag).model_dump(),
        additional_metadata={SIGNATURE_KEY_META: sig.key, DISPATCH_ID_META: "late"},
    )

    await wait_runs_cancelled(app, sig.key, "the late run reads CANCELLED")
    assert await app.records("e2e-sleep-start", tag) == []
    assert await status_of(sig.key) == SignatureStatus.CANCELED


async def test_retry_a_canceled_signature_runs_its_stored_input(app: App, tag: str) -> None:
    sig = await mageflow.asign("e2e-echo")
    await sig.suspend()
    await sig.aio_run_no_wait(Echo(tag=tag, note="parked"))  # parked: input stored
    await sig.cancel()
    assert await app.records("e2e-echo", tag) == []
    await mageflow.retry(sig.key)
    assert await sig.aio_result(timeout=60) == {"tag": tag, "note": "parked", "extra": 0}
    assert len(await app.records("e2e-echo", tag)) == 1


async def test_retry_a_failed_signature_runs_it_again_callbacks_run_once(
    app: App, tag: str
) -> None:
    bad = await mageflow.asign("e2e-on-error", reason="failed")
    sig = await mageflow.asign("e2e-non-retryable", error_callbacks=[bad])
    with pytest.raises(SignatureFailedError):
        await sig.aio_run(Order(order_id=2, tag=tag), timeout=60)
    await wait_records(app, "e2e-on-error", tag, n=1)
    await sig.retry()
    with pytest.raises(SignatureFailedError):
        await sig.aio_result(timeout=60)
    assert len(await app.records("e2e-non-retryable", tag)) == 2
    await asyncio.sleep(2)
    assert len(await app.records("e2e-on-error", tag)) == 1  # a callback runs once


@pytest.mark.parametrize("delay", [0.0, 0.5, 1.5])
async def test_cancel_racing_completion_has_one_outcome(app: App, tag: str, delay: float) -> None:
    ok = await mageflow.asign("e2e-receipt", tag=tag)
    sig = await mageflow.asign("e2e-charge", success_callbacks=[ok])
    await sig.aio_run_no_wait(Order(order_id=3, tag=tag))
    await asyncio.sleep(delay)
    try:
        await mageflow.cancel(sig.key)
        canceled = True
    except InvalidTransitionError:
        canceled = False
    if canceled:
        with pytest.raises(SignatureCanceledError):
            await sig.aio_result(timeout=30)
        await asyncio.sleep(3)  # a run that was already executing has ended by now
        assert await status_of(sig.key) == SignatureStatus.CANCELED
        assert await app.records("e2e-receipt", tag) == []
    else:
        assert (await sig.aio_result(timeout=30))["order_id"] == 3
        await wait_records(app, "e2e-receipt", tag)


async def _cli(*argv: str) -> tuple[int, str, str]:
    import shutil
    import sys
    from pathlib import Path

    exe = shutil.which("mageflow", path=str(Path(sys.executable).parent))
    assert exe is not None
    proc = await asyncio.create_subprocess_exec(
        exe, *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return int(proc.returncode or 0), out.decode(), err.decode()


async def test_cli_cancels_and_retries_through_the_engine(
    app: App, tag: str, redis_url: str, e2e_prefix: str
) -> None:
    common = ["--redis-url", redis_url, "--prefix", e2e_prefix, "--engine", "hatchet"]
    sig = await mageflow.asign("e2e-sleep")
    await sig.aio_run_no_wait(Sleep(seconds=45, tag=tag))
    await wait_records(app, "e2e-sleep-start", tag)
    code, out, err = await _cli("cancel", sig.key, *common)
    assert code == 0, err
    assert out.strip() == f"{sig.key}: canceled"

    await wait_runs_cancelled(app, sig.key, "hatchet run cancelled by the CLI")
    code, out, err = await _cli("retry", sig.key, *common)
    assert code == 0, err
    await wait_records(app, "e2e-sleep-start", tag, n=2)  # dispatched again by the CLI
    code, _, err = await _cli("show", sig.key, "--json", *common[:4])
    assert code == 0, err
    code, _, err = await _cli("cancel", sig.key, *common)
    assert code == 0, err
    code, _, err = await _cli("resume", sig.key, *common)
    assert code == 4 and "canceled" in err
