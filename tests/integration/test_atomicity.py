"""A transition interrupted halfway leaves no partial state.

Every state change is one Lua script, which Redis runs atomically. These
tests cut the round trip at the worst moments — the server paused with the
command in flight, the connection killed, the engine refusing the dispatch
that follows a state change — and check that the signature is either fully
before or fully after the change, and can still make progress.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import mageflow
import pytest
import redis.asyncio as aioredis
from mageflow import EngineError, MageflowConfig, MageflowRuntime, StoreError
from mageflow._store.redis_store import RedisStore
from mageflow.engine import DispatchRequest, DispatchResult
from mageflow.inmemory import InMemoryTaskManager
from thirdmagic import LifecycleEvent

from tests.integration._helpers import Raw, eventually

pytestmark = pytest.mark.usefixtures("runtime")


@pytest.fixture
async def paused_admin(redis_client: aioredis.Redis) -> AsyncIterator[aioredis.Redis]:
    """The admin connection; any CLIENT PAUSE is lifted at the end no matter what."""
    try:
        yield redis_client
    finally:
        await redis_client.execute_command("CLIENT", "UNPAUSE")


def _flaky_dispatch(
    manager: InMemoryTaskManager, monkeypatch: pytest.MonkeyPatch, failures: int
) -> list[DispatchRequest]:
    """Make the engine refuse the next ``failures`` dispatches."""
    real = manager.dispatch
    refused: list[DispatchRequest] = []

    async def dispatch(request: DispatchRequest) -> DispatchResult:
        if len(refused) < failures:
            refused.append(request)
            raise ConnectionError("engine unreachable")
        return await real(request)

    monkeypatch.setattr(manager, "dispatch", dispatch)
    return refused


# -- the engine fails after the store changed ---------------------------------------------


async def test_failed_dispatch_leaves_the_signature_runnable(
    manager: InMemoryTaskManager, raw: Raw, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Any] = []

    @manager.task("p")
    async def p(msg: dict[str, Any]) -> None:
        calls.append(msg)

    refused = _flaky_dispatch(manager, monkeypatch, failures=1)
    sig = await mageflow.asign(p)
    with pytest.raises(EngineError) as info:
        await sig.aio_run_no_wait({"n": 1})
    assert sig.key in str(info.value)
    assert "'p'" in str(info.value)
    assert len(refused) == 1
    assert await raw.status(sig.key) == "pending"

    await sig.aio_run_no_wait({"n": 2})
    await manager.wait_idle()
    assert calls == [{"n": 2}]
    assert await raw.status(sig.key) == "done"


async def test_failed_replay_on_resume_can_be_resumed_again(
    manager: InMemoryTaskManager, raw: Raw, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Any] = []

    @manager.task("p")
    async def p(msg: dict[str, Any]) -> None:
        calls.append(msg)

    sig = await mageflow.asign(p)
    await sig.suspend()
    await sig.aio_run_no_wait({"n": 1})  # parked
    _flaky_dispatch(manager, monkeypatch, failures=1)
    with pytest.raises(EngineError, match=sig.key):
        await sig.resume()
    assert await raw.status(sig.key) == "pending"
    assert calls == []
    await sig.resume()  # the parked message is still there and is replayed now
    await manager.wait_idle()
    assert calls == [{"n": 1}]
    assert await raw.status(sig.key) == "done"


async def test_failed_callback_dispatch_is_repaired_by_redelivery(
    manager: InMemoryTaskManager, raw: Raw, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: dict[str, int] = {}

    @manager.task("parent", retries=1)
    async def parent(msg: dict[str, Any]) -> int:
        calls["parent"] = calls.get("parent", 0) + 1
        return 1

    @manager.task("cb")
    async def cb(msg: dict[str, Any]) -> None:
        calls["cb"] = calls.get("cb", 0) + 1

    callback = await mageflow.asign("cb")
    sig = await mageflow.asign(parent, success_callbacks=[callback])
    real = manager.dispatch
    refused: list[str] = []

    async def dispatch(request: DispatchRequest) -> DispatchResult:
        if request.task_name == "cb" and not refused:
            refused.append(request.signature_key)
            raise ConnectionError("engine unreachable")
        return await real(request)

    monkeypatch.setattr(manager, "dispatch", dispatch)
    await sig.aio_run_no_wait({})
    await manager.wait_idle()
    assert refused == [callback.key]
    # The parent's retry found it done and re-sent the claimed callback (the outbox).
    assert calls == {"parent": 1, "cb": 1}
    assert await raw.status(sig.key) == "done"
    assert await raw.status(callback.key) == "done"


# -- the store round trip is cut --------------------------------------------------------------


def _all_or_nothing(before: dict[str, str], after: dict[str, str], changed: dict[str, str]) -> bool:
    if after == before:
        return False
    expected = {**before, **changed}
    assert after == expected, "partial transition"
    return True


async def test_transition_timed_out_while_server_paused(
    redis_url: str, config: MageflowConfig, raw: Raw, paused_admin: aioredis.Redis
) -> None:
    sig = await mageflow.asign("t", a=1)
    before = await raw.hash(sig.key)
    victim = aioredis.from_url(redis_url, decode_responses=True, socket_timeout=0.3)
    store = RedisStore(victim, config)
    await store.prepare()
    try:
        await paused_admin.execute_command("CLIENT", "PAUSE", 5000, "WRITE")
        with pytest.raises(StoreError) as info:
            await store.transition(sig.key, LifecycleEvent.SUSPEND, "", "d")
        assert sig.key in str(info.value)
        assert await raw.hash(sig.key) == before  # nothing half-written meanwhile
        await paused_admin.execute_command("CLIENT", "UNPAUSE")
        await asyncio.sleep(0.05)
        after = await raw.hash(sig.key)
        _all_or_nothing(before, after, {"s": "suspended", "ls": "pending"})
    finally:
        await victim.aclose()
    # Repeating the call converges: suspend is idempotent.
    await mageflow.pause(sig.key)
    final = await raw.hash(sig.key)
    assert final == {**before, "s": "suspended", "ls": "pending"}


@pytest.mark.parametrize("op", ["suspend", "add_callbacks", "aupdate", "remove", "finish"])
async def test_connection_killed_with_the_command_in_flight(
    op: str,
    redis_url: str,
    config: MageflowConfig,
    runtime: MageflowRuntime,
    raw: Raw,
    paused_admin: aioredis.Redis,
) -> None:
    cb = await mageflow.asign("cb")
    sig = await mageflow.asign("t", a=1, error_callbacks=[cb])
    if op == "finish":
        await runtime.store.dispatch(sig.key, {}, "d", "")
        await runtime.store.begin(sig.key, "d", "run-1", {})
    before = await raw.snapshot()
    pool = aioredis.BlockingConnectionPool.from_url(
        redis_url, decode_responses=True, max_connections=1
    )
    victim = aioredis.Redis(connection_pool=pool)
    store = RedisStore(victim, config)
    await store.prepare()
    victim_id = await victim.client_id()
    calls = {
        "suspend": lambda: store.transition(sig.key, LifecycleEvent.SUSPEND, "", "d2"),
        "add_callbacks": lambda: store.add_callbacks(sig.key, [cb.key], [], ""),
        "aupdate": lambda: store.update_kwargs(sig.key, {"b": 2, "c": 3}, ""),
        "remove": lambda: store.remove(sig.key, with_error=True, with_success=True, token=""),
        "finish": lambda: store.finish(sig.key, succeeded=False, run_id="run-1", payload="x"),
    }
    try:
        await paused_admin.execute_command("CLIENT", "PAUSE", 5000, "WRITE")
        pending = asyncio.create_task(calls[op]())

        async def blocked() -> bool:
            listing = await paused_admin.execute_command("CLIENT", "LIST", "ID", victim_id)
            text = listing if isinstance(listing, str) else str(listing)
            return "cmd=evalsha" in text

        await eventually(blocked, what="command in flight")
        await paused_admin.execute_command("CLIENT", "KILL", "ID", victim_id)
        await paused_admin.execute_command("CLIENT", "UNPAUSE")
        try:
            await asyncio.wait_for(pending, 5)
        except StoreError as exc:
            assert sig.key in str(exc)
        after = await raw.snapshot()
    finally:
        await victim.aclose()
    if after != before:
        # It ran completely, as one unit, or not at all.
        if op == "remove":
            assert after == {}
        else:
            sig_key = raw.sig_key(sig.key)
            changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
            assert changed <= {sig_key, raw.sig_key(cb.key)}
            assert after[sig_key][1]["_v"] == "1"


async def test_lua_error_midway_would_not_roll_back_so_scripts_check_first(
    redis_client: aioredis.Redis, raw: Raw
) -> None:
    """Redis keeps writes a script made before it failed; our scripts validate first."""
    probe = raw.sig_key("probe")
    with pytest.raises(Exception, match="boom"):
        await redis_client.eval("redis.call('SET', KEYS[1], 'written'); error('boom')", 1, probe)
    assert await redis_client.get(probe) == "written"
    await redis_client.delete(probe)

    # Corrupt the second list the add_callbacks script touches: nothing is written.
    sig = await mageflow.asign("t")
    a = await mageflow.asign("a")
    await redis_client.hset(raw.sig_key(sig.key), "ec", "{broken")
    before = await raw.snapshot()
    with pytest.raises(StoreError, match=sig.key):
        await sig.add_callbacks(success=[a], errors=[a])
    assert await raw.snapshot() == before
