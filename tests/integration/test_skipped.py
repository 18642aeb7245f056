"""Issue 11.8: callbacks that will never fire are settled as ``skipped`` with their parent.

Plus issue 11.5's trace of a callback deleted before its parent ran.
"""

from __future__ import annotations

import logging
from typing import Any

import mageflow
import pytest
from mageflow import SignatureStatus
from mageflow.inmemory import InMemoryTaskManager

from tests.integration._helpers import Raw

pytestmark = pytest.mark.usefixtures("runtime")
S = SignatureStatus


def _tasks(manager: InMemoryTaskManager, seen: list[str]) -> None:
    @manager.task("ok")
    async def ok(msg: Any) -> str:
        seen.append("ok")
        return "fine"

    @manager.task("boom")
    async def boom(msg: Any) -> None:
        seen.append("boom")
        raise RuntimeError("boom")

    @manager.task("cb")
    async def cb(msg: Any) -> None:
        seen.append("cb")


async def _status(key: str) -> S | None:
    sig = await mageflow.load_signature(key)
    return sig.status if sig else None


async def test_success_skips_error_callbacks_and_theirs(manager: InMemoryTaskManager) -> None:
    seen: list[str] = []
    _tasks(manager, seen)
    nested = await mageflow.asign("cb")
    err = await mageflow.asign("cb", success_callbacks=[nested])
    good = await mageflow.asign("cb")
    sig = await mageflow.asign("ok", success_callbacks=[good], error_callbacks=[err])
    await sig.aio_run_no_wait({})
    await manager.wait_idle()
    assert await _status(sig.key) is S.DONE
    assert await _status(good.key) is S.DONE
    assert await _status(err.key) is S.SKIPPED
    assert await _status(nested.key) is S.SKIPPED  # its own callbacks will never fire either
    assert seen.count("cb") == 1


async def test_failure_skips_success_callbacks_and_a_container_callbacks_members(
    manager: InMemoryTaskManager, raw: Raw
) -> None:
    seen: list[str] = []
    _tasks(manager, seen)
    a, b = await mageflow.asign("cb"), await mageflow.asign("cb")
    then = await mageflow.achain([a, b])
    err = await mageflow.asign("cb")
    sig = await mageflow.asign("boom", success_callbacks=[then], error_callbacks=[err])
    await sig.aio_run_no_wait({})
    await manager.wait_idle()
    assert await _status(sig.key) is S.FAILED
    assert await _status(err.key) is S.DONE
    for key in (then.key, a.key, b.key):
        assert await _status(key) is S.SKIPPED
    # nothing waits for them: they expire with the done TTL, like finished work
    assert 0 < await raw.pttl(then.key) <= raw.rt.config.done_ttl.total_seconds() * 1000


async def test_a_callback_attached_elsewhere_is_left_for_its_other_parent(
    manager: InMemoryTaskManager,
) -> None:
    seen: list[str] = []
    _tasks(manager, seen)
    shared = await mageflow.asign("cb")
    first = await mageflow.asign("ok", error_callbacks=[shared])
    second = await mageflow.asign("ok", success_callbacks=[shared])
    await first.aio_run_no_wait({})
    await manager.wait_idle()
    assert await _status(shared.key) is S.PENDING  # second may still fire it
    await second.aio_run_no_wait({})
    await manager.wait_idle()
    assert await _status(shared.key) is S.DONE
    assert seen.count("cb") == 1

    both = await mageflow.asign("cb")
    x = await mageflow.asign("ok", error_callbacks=[both])
    y = await mageflow.asign("ok")
    await y.add_callbacks(errors=[both])
    await x.aio_run_no_wait({})
    await manager.wait_idle()
    assert await _status(both.key) is S.PENDING
    await y.aio_run_no_wait({})
    await manager.wait_idle()
    assert await _status(both.key) is S.SKIPPED  # the last parent that held it settled


async def test_a_container_settling_skips_its_other_branch(manager: InMemoryTaskManager) -> None:
    seen: list[str] = []
    _tasks(manager, seen)
    err = await mageflow.asign("cb")
    swarm = await mageflow.aswarm(tasks=["ok", "ok"], error_callbacks=[err], is_swarm_closed=True)
    await swarm.aio_run_no_wait({})
    await manager.wait_idle()
    assert await _status(swarm.key) is S.DONE
    assert await _status(err.key) is S.SKIPPED


async def test_a_deleted_success_callback_leaves_a_trace(
    manager: InMemoryTaskManager, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []
    _tasks(manager, seen)
    gone = await mageflow.asign("cb")
    kept = await mageflow.asign("cb")
    sig = await mageflow.asign("ok", success_callbacks=[gone, kept])
    await mageflow.remove(gone.key)
    with caplog.at_level(logging.WARNING, logger="mageflow"):
        await sig.aio_run_no_wait({})
        await manager.wait_idle()
    loaded = await mageflow.load_signature(sig.key)
    assert loaded is not None and loaded.status is S.DONE
    assert loaded.missing_callbacks == [gone.key]  # recorded on the parent
    assert gone.key in caplog.text and "no longer stored" in caplog.text
    assert seen.count("cb") == 1  # the other callback still ran


async def test_retrying_the_failed_parent_unskips_its_success_callbacks(
    manager: InMemoryTaskManager,
) -> None:
    calls = {"n": 0}
    seen: list[str] = []

    @manager.task("flaky-once")
    async def flaky(msg: Any) -> str:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("first time")
        return "fine"

    @manager.task("cb")
    async def cb(msg: Any) -> None:
        seen.append("cb")

    nested = await mageflow.asign("cb")
    ok = await mageflow.asign("cb", success_callbacks=[nested])
    sig = await mageflow.asign("flaky-once", success_callbacks=[ok])
    await sig.aio_run_no_wait({})
    await manager.wait_idle()
    assert await _status(ok.key) is S.SKIPPED and await _status(nested.key) is S.SKIPPED
    await mageflow.retry(sig.key)
    await manager.wait_idle()
    assert await _status(sig.key) is S.DONE
    assert await _status(ok.key) is S.DONE and await _status(nested.key) is S.DONE
    assert seen == ["cb", "cb"]
