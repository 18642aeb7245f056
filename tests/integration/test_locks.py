"""lock_task: contention, bounded waits, expiry, and the holder's own operations."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
import uuid
from datetime import timedelta
from typing import Any

import mageflow
import pytest
from mageflow import MageflowConfig, SignatureLockedError, TaskSignature
from mageflow.inmemory import InMemoryTaskManager

from tests.integration._helpers import Raw, eventually, fast_config

pytestmark = pytest.mark.usefixtures("runtime")

LOCK_TTL = 0.8
LOCK_WAIT = 0.3


@pytest.fixture
def config(key_prefix: str) -> MageflowConfig:
    return fast_config(
        key_prefix, lock_ttl=timedelta(seconds=LOCK_TTL), lock_wait=timedelta(seconds=LOCK_WAIT)
    )


def _others(sig: TaskSignature) -> dict[str, Any]:
    """Every operation a non-holder might try on a locked signature."""
    return {
        "suspend": lambda: mageflow.pause(sig.key),
        "interrupt": lambda: mageflow.pause(sig.key, mageflow.PauseActionTypes.INTERRUPT),
        "resume": lambda: mageflow.resume(sig.key),
        "remove": lambda: mageflow.remove(sig.key),
        "delete": lambda: TaskSignature.delete_signature(sig.key),
        "aupdate": lambda: sig.kwargs.aupdate(x=1),
        "add_callbacks": lambda: sig.add_callbacks(success=[sig.key]),
        "run": lambda: sig.aio_run_no_wait({}),
    }


@pytest.mark.parametrize(
    "op", ["suspend", "interrupt", "resume", "remove", "delete", "aupdate", "add_callbacks", "run"]
)
async def test_other_callers_wait_then_get_a_clear_error(op: str, raw: Raw) -> None:
    sig = await mageflow.asign("t", a=1)
    async with mageflow.lock_task(sig.key):
        before = await raw.snapshot()

        async def other() -> None:
            await _others(sig)[op]()

        # Run outside the holder's context (a different task without the token).
        started = time.monotonic()
        with pytest.raises(SignatureLockedError) as info:
            await asyncio.create_task(other(), context=contextvars.Context())
        waited = time.monotonic() - started
        assert info.value.key == sig.key
        assert sig.key in str(info.value)
        assert "locked" in str(info.value)
        assert waited >= LOCK_WAIT * 0.9
        assert waited < LOCK_WAIT + 1.0
        assert await raw.snapshot() == before
    assert await mageflow.load_signature(sig.key) is not None


async def test_waiter_proceeds_when_the_holder_releases(raw: Raw) -> None:
    sig = await mageflow.asign("t")
    entered = asyncio.Event()

    async def holder() -> None:
        async with mageflow.lock_task(sig.key):
            entered.set()
            await asyncio.sleep(LOCK_WAIT / 3)

    task = asyncio.create_task(holder())
    await entered.wait()
    await mageflow.pause(sig.key)  # waits for the release, then succeeds
    await task
    assert await raw.status(sig.key) == "suspended"


async def test_second_lock_times_out(raw: Raw) -> None:
    sig = await mageflow.asign("t")
    async with mageflow.lock_task(sig.key):

        async def second() -> None:
            async with mageflow.lock_task(sig.key, wait=0.1):
                pytest.fail("acquired a held lock")

        started = time.monotonic()
        with pytest.raises(SignatureLockedError, match=sig.key):
            await asyncio.create_task(second(), context=contextvars.Context())
        assert time.monotonic() - started < LOCK_WAIT


async def test_lock_is_reentrant_in_the_holders_context(raw: Raw) -> None:
    sig = await mageflow.asign("t")
    async with mageflow.lock_task(sig.key):
        async with mageflow.lock_task(sig.key) as inner:
            await inner.suspend()
        # Still held after the inner block ends.
        assert await raw.client.exists(raw.rt.store.keys.lock(sig.key)) == 1
        await mageflow.resume(sig.key)
    assert await raw.status(sig.key) == "pending"


async def test_holder_can_do_everything(raw: Raw) -> None:
    sig = await mageflow.asign("t")
    cb = await mageflow.asign("cb")
    async with mageflow.lock_task(sig.key) as held:
        await held.suspend()
        await held.resume()
        await held.interrupt()
        await held.resume()
        await held.kwargs.aupdate(y=2)
        await held.add_callbacks(success=[cb])
        await held.remove()
    assert await mageflow.load_signature(sig.key) is None
    assert await mageflow.load_signature(cb.key) is None


async def test_lock_expires_so_a_crashed_holder_cannot_freeze(raw: Raw) -> None:
    sig = await mageflow.asign("t")
    store = raw.rt.store
    # A holder that acquired and then died without releasing.
    assert await store.lock_and_load(sig.key, uuid.uuid4().hex) is not None
    pttl = await raw.client.pttl(store.keys.lock(sig.key))
    assert 0 < pttl <= LOCK_TTL * 1000
    with pytest.raises(SignatureLockedError):
        await mageflow.pause(sig.key)

    async def free() -> bool:
        return await raw.client.exists(store.keys.lock(sig.key)) == 0

    await eventually(free, timeout=LOCK_TTL + 2, what="lock expiry")
    await mageflow.pause(sig.key)
    assert await raw.status(sig.key) == "suspended"


async def test_lost_holder_does_not_release_the_next_holders_lock(raw: Raw) -> None:
    sig = await mageflow.asign("t")
    lock_key = raw.rt.store.keys.lock(sig.key)
    second_in = asyncio.Event()
    first_done = asyncio.Event()

    async def first() -> None:
        with pytest.raises(mageflow.LockLostError) as lost:
            async with mageflow.lock_task(sig.key):
                await raw.client.delete(lock_key)  # the lock vanishes under the holder
                await second_in.wait()
                await asyncio.sleep(LOCK_TTL / 2)  # a renewal is due: it finds the lock taken
        assert lost.value.key == sig.key
        first_done.set()

    async def second() -> None:
        async with mageflow.lock_task(sig.key, wait=2):
            second_in.set()
            await first_done.wait()
            # The first holder's exit did not delete this holder's lock.
            assert await raw.client.exists(lock_key) == 1

    await asyncio.gather(
        asyncio.create_task(first(), context=contextvars.Context()),
        asyncio.create_task(second(), context=contextvars.Context()),
    )


async def _gone(raw: Raw, lock_key: str) -> bool:
    return await raw.client.exists(lock_key) == 0


async def test_a_run_arriving_while_locked_waits_for_the_lock(
    manager: InMemoryTaskManager, raw: Raw
) -> None:
    ran: list[float] = []

    @manager.task("p")
    async def p(msg: dict[str, Any]) -> None:
        ran.append(time.monotonic())

    sig = await mageflow.asign(p)
    async with mageflow.lock_task(sig.key) as held:
        await held.aio_run_no_wait({})
        await asyncio.sleep(0.1)
        assert ran == []
        assert await raw.status(sig.key) == "pending"
        released = time.monotonic()
    await manager.wait_idle()
    assert len(ran) == 1
    assert ran[0] >= released
    assert await raw.status(sig.key) == "done"


async def test_lock_on_missing_key_fails_fast() -> None:
    started = time.monotonic()
    with pytest.raises(mageflow.SignatureNotFoundError, match="task-nope"):
        async with mageflow.lock_task("task-nope"):
            pass
    assert time.monotonic() - started < LOCK_WAIT


# -- issue 11.2: lock_task keeps its promise ---------------------------------------


async def test_plain_call_form_really_locks(raw: Raw) -> None:
    sig = await mageflow.asign("t")
    held = await mageflow.lock_task(sig.key)
    assert held.signature.key == sig.key

    async def other() -> None:
        await mageflow.pause(sig.key)

    with pytest.raises(SignatureLockedError):
        await asyncio.create_task(other(), context=contextvars.Context())
    await mageflow.pause(sig.key)  # the holder may
    await held.release()
    await mageflow.resume(sig.key)  # released: anyone may
    assert await raw.status(sig.key) == "pending"


async def test_a_handle_never_awaited_or_entered_says_no_lock_was_taken(
    raw: Raw, caplog: pytest.LogCaptureFixture
) -> None:
    import gc

    sig = await mageflow.asign("t")
    with pytest.warns(RuntimeWarning, match="no lock was taken"):
        mageflow.lock_task(sig.key)
        gc.collect()
    assert "no lock was taken" in caplog.text
    await mageflow.pause(sig.key)  # and indeed nothing is locked


async def test_unknown_keyword_is_refused_at_call_time() -> None:
    with pytest.raises(TypeError, match="timeout"):
        mageflow.lock_task("task-anything", timeout=3)  # type: ignore[call-arg]
    with pytest.raises(mageflow.MageflowValidationError, match="wait"):
        mageflow.lock_task("task-anything", wait="soon")


async def test_lock_does_not_lapse_while_the_holder_is_inside(raw: Raw) -> None:
    sig = await mageflow.asign("t")

    async def other() -> None:
        await mageflow.pause(sig.key)

    async with mageflow.lock_task(sig.key):
        await asyncio.sleep(LOCK_TTL * 3)  # three lock_ttl periods
        assert await raw.client.exists(raw.rt.store.keys.lock(sig.key)) == 1
        with pytest.raises(SignatureLockedError):
            await asyncio.create_task(other(), context=contextvars.Context())
        assert await raw.status(sig.key) == "pending"


async def test_container_member_locks_are_renewed_too(raw: Raw) -> None:
    a = await mageflow.asign("a")
    b = await mageflow.asign("b")
    chain = await mageflow.achain([a, b])
    async with mageflow.lock_task(chain.key):
        await asyncio.sleep(LOCK_TTL * 2)
        for k in (chain.key, a.key, b.key):
            assert await raw.client.exists(raw.rt.store.keys.lock(k)) == 1


async def test_a_failed_renewal_is_loud(raw: Raw, caplog: pytest.LogCaptureFixture) -> None:
    sig = await mageflow.asign("t")
    with pytest.raises(mageflow.LockLostError, match=sig.key):
        async with mageflow.lock_task(sig.key):
            await raw.client.delete(raw.rt.store.keys.lock(sig.key))
            await asyncio.sleep(LOCK_TTL)  # at least one renewal
            assert "was lost while held" in caplog.text


async def test_a_renewal_store_error_is_loud_and_fatal_only_past_lock_ttl(
    raw: Raw, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = raw.rt.store
    real = store.renew_lock
    failing = {"on": True}

    async def flaky(key: str, token: str) -> bool:
        if failing["on"]:
            raise mageflow.StoreError("redis is unreachable (test)", key=key)
        return await real(key, token)

    monkeypatch.setattr(store, "renew_lock", flaky)
    sig = await mageflow.asign("t")
    async with mageflow.lock_task(sig.key):
        await asyncio.sleep(LOCK_TTL / 2)  # one failed renewal, within lock_ttl
        assert "renewing the lock" in caplog.text
        failing["on"] = False
        await asyncio.sleep(LOCK_TTL / 2)  # the next one succeeds: not lost
    failing["on"] = True
    with pytest.raises(mageflow.LockLostError, match="longer than lock_ttl"):
        async with mageflow.lock_task(sig.key):
            await asyncio.sleep(LOCK_TTL * 1.6)


async def test_release_stops_a_renewer_whose_cancellation_was_swallowed(
    raw: Raw, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Seen in CI: on Python 3.11 asyncio.wait_for (redis-py's send under a
    # socket timeout) can swallow a cancellation that lands as the command
    # completes. The renewer then renewed the released lock forever and
    # release() waited for it: lock_task's exit hung.
    store = raw.rt.store
    real = store.renew_lock
    in_flight = asyncio.Event()
    renewals = 0

    async def swallowing(key: str, token: str) -> bool:
        nonlocal renewals
        renewals += 1
        in_flight.set()
        # what wait_for can do when the command completes as the cancel lands
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.1)
        return await real(key, token)

    monkeypatch.setattr(store, "renew_lock", swallowing)
    sig = await mageflow.asign("t")
    async with asyncio.timeout(5):
        async with mageflow.lock_task(sig.key):
            await in_flight.wait()  # leave while a renewal is under way
    count = renewals
    await asyncio.sleep(LOCK_TTL)
    assert renewals == count  # nothing renews the released lock
    async with mageflow.lock_task(sig.key, wait=0):
        pass  # and it is free
