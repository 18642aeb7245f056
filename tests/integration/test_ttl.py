"""Active TTL slides on every transition; a bounded done TTL applies after completion."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import mageflow
import pytest
from mageflow import MageflowConfig, MageflowRuntime
from mageflow.inmemory import InMemoryTaskManager, NonRetryableError
from thirdmagic import LifecycleEvent

from tests.integration._helpers import Raw, eventually

pytestmark = pytest.mark.usefixtures("runtime")

ACTIVE_MS = 60_000
DONE_MS = 5_000
SHORT_MS = 1_000


@pytest.fixture
def config(key_prefix: str) -> MageflowConfig:
    return MageflowConfig(
        key_prefix=key_prefix,
        active_ttl=timedelta(milliseconds=ACTIVE_MS),
        done_ttl=timedelta(milliseconds=DONE_MS),
        lock_wait=timedelta(milliseconds=300),
    )


async def _shrink(raw: Raw, key: str) -> None:
    await raw.client.pexpire(raw.sig_key(key), SHORT_MS)
    assert await raw.pttl(key) <= SHORT_MS


def _active(pttl: int) -> bool:
    return ACTIVE_MS - 5_000 < pttl <= ACTIVE_MS


async def test_new_signature_has_the_active_ttl(raw: Raw) -> None:
    sig = await mageflow.asign("t")
    assert _active(await raw.pttl(sig.key))


@pytest.mark.parametrize(
    "op",
    [
        "suspend",
        "resume-noop",
        "interrupt",
        "aupdate",
        "add_callbacks",
        "dispatch",
        "repeat-suspend",
    ],
)
async def test_active_ttl_slides_back_after_each_operation(
    op: str, raw: Raw, manager: InMemoryTaskManager
) -> None:
    @manager.task("t")
    async def t(msg: dict[str, Any]) -> None:
        return None

    sig = await mageflow.asign("t")
    cb = await mageflow.asign("cb")
    if op == "repeat-suspend":
        await sig.suspend()
    await _shrink(raw, sig.key)
    if op in ("suspend", "repeat-suspend"):
        await sig.suspend()
    elif op == "resume-noop":
        await sig.resume()
    elif op == "interrupt":
        await sig.interrupt()
    elif op == "aupdate":
        await sig.kwargs.aupdate(a=1)
    elif op == "add_callbacks":
        await _shrink(raw, cb.key)
        await sig.add_callbacks(success=[cb])
        assert _active(await raw.pttl(cb.key))
    elif op == "dispatch":
        await sig.suspend()
        await _shrink(raw, sig.key)
        await sig.aio_run_no_wait({})  # parked: still a write that slides the TTL
    assert _active(await raw.pttl(sig.key))


async def test_creating_a_parent_extends_its_callbacks(raw: Raw) -> None:
    cb = await mageflow.asign("cb")
    await _shrink(raw, cb.key)
    await mageflow.asign("t", success_callbacks=[cb])
    assert _active(await raw.pttl(cb.key))


async def test_worker_begin_slides_the_ttl(runtime: MageflowRuntime, raw: Raw) -> None:
    sig = await mageflow.asign("t")
    await runtime.store.dispatch(sig.key, {}, "d", "")
    await _shrink(raw, sig.key)
    await runtime.store.begin(sig.key, "d", "r", {})
    assert _active(await raw.pttl(sig.key))
    await _shrink(raw, sig.key)
    await runtime.store.begin(sig.key, "d", "r", {})  # a retry attempt slides too
    assert _active(await raw.pttl(sig.key))


async def test_done_ttl_after_success(manager: InMemoryTaskManager, raw: Raw) -> None:
    @manager.task("t")
    async def t(msg: dict[str, Any]) -> int:
        return 1

    @manager.task("cb")
    async def cb_task(msg: dict[str, Any]) -> None:
        await cb_gate.wait()

    cb_gate = asyncio.Event()
    cb = await mageflow.asign("cb")
    sig = await mageflow.asign("t", success_callbacks=[cb])
    await sig.aio_run_no_wait({})

    async def parent_done() -> bool:
        return await raw.status(sig.key) == "done"

    await eventually(parent_done, what="parent done")
    assert 0 < await raw.pttl(sig.key) <= DONE_MS
    # The callback is still running: it keeps the active TTL.
    assert _active(await raw.pttl(cb.key))
    cb_gate.set()
    await manager.wait_idle()
    assert 0 < await raw.pttl(cb.key) <= DONE_MS


async def test_done_ttl_after_failure(manager: InMemoryTaskManager, raw: Raw) -> None:
    @manager.task("t")
    async def t(msg: dict[str, Any]) -> int:
        raise NonRetryableError("x")

    sig = await mageflow.asign("t")
    await sig.aio_run_no_wait({})
    await manager.wait_idle()
    assert await raw.status(sig.key) == "failed"
    assert 0 < await raw.pttl(sig.key) <= DONE_MS


async def test_done_ttl_after_cancel_and_on_repeats(runtime: MageflowRuntime, raw: Raw) -> None:
    sig = await mageflow.asign("t")
    await runtime.apply(sig.key, LifecycleEvent.CANCEL)
    assert 0 < await raw.pttl(sig.key) <= DONE_MS
    await runtime.apply(sig.key, LifecycleEvent.CANCEL)  # the repeat does not revive it
    assert 0 < await raw.pttl(sig.key) <= DONE_MS


async def test_done_ttl_not_extended_by_redelivery(
    runtime: MageflowRuntime, manager: InMemoryTaskManager, raw: Raw
) -> None:
    @manager.task("t")
    async def t(msg: dict[str, Any]) -> int:
        return 1

    sig = await mageflow.asign("t")
    await sig.aio_run_no_wait({})
    await manager.wait_idle()
    (record,) = manager.runs.values()
    await runtime.store.begin(sig.key, record.dispatch_id, record.run_id, {})
    await runtime.store.finish(sig.key, succeeded=True, run_id=record.run_id, payload=1)
    assert 0 < await raw.pttl(sig.key) <= DONE_MS


async def test_abandoned_signature_expires(
    redis_client: Any, manager: InMemoryTaskManager, key_prefix: str
) -> None:
    short = mageflow.configure(
        redis_client,
        manager,
        MageflowConfig(key_prefix=key_prefix, active_ttl=timedelta(milliseconds=200)),
    )
    await short.store.prepare()
    sig = await short.sign("t")
    assert await short.load(sig.key) is not None

    async def gone() -> bool:
        return await short.load(sig.key) is None

    await eventually(gone, timeout=5, what="signature expiry")
