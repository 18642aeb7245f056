"""Payloads by reference (issue 10): big inputs, results and swarm result lists stay in Redis."""

from __future__ import annotations

import json
from typing import Any

import mageflow
import pytest
import redis.asyncio as aioredis
from mageflow import (
    MageflowConfig,
    ReturnValue,
    StoreError,
    SwarmResults,
    SwarmSignature,
    TaskSignature,
    _payloads,
)
from mageflow.engine import REFERENCE_TAG
from mageflow.inmemory import InMemoryTaskManager, NonRetryableError
from pydantic import BaseModel

from tests.integration._helpers import fast_config

pytestmark = pytest.mark.usefixtures("runtime")

THRESHOLD = 2048


@pytest.fixture
def config(key_prefix: str) -> MageflowConfig:
    return fast_config(key_prefix, payload_threshold=THRESHOLD, results_chunk=7)


class Blob(BaseModel):
    data: str
    n: int = 0


class Got(BaseModel):
    value: ReturnValue[Any]
    tag: str = ""


class GotList(BaseModel):
    value: ReturnValue[list[Any]]


class GotStream(BaseModel):
    value: ReturnValue[SwarmResults]


class Failed(BaseModel):
    data: str
    n: int = 0
    tag: str = ""


def _small(payload: dict[str, Any]) -> bool:
    return len(json.dumps(payload)) < 1024


@pytest.fixture
def seen(manager: InMemoryTaskManager) -> dict[str, list[Any]]:
    rec: dict[str, list[Any]] = {}

    @manager.task("echo")
    async def echo(msg: Blob) -> dict[str, Any]:
        rec.setdefault("echo", []).append(msg)
        return {"data": msg.data * 2, "n": msg.n}

    @manager.task("member")
    async def member(msg: Blob) -> str:
        return f"{msg.n}:" + "x" * 500

    @manager.task("big-member")
    async def big_member(msg: Blob) -> str:
        return f"{msg.n}:" + "y" * (THRESHOLD + 10)

    @manager.task("fail")
    async def fail(msg: Blob) -> None:
        raise NonRetryableError("no")

    @manager.task("got")
    async def got(msg: Got) -> None:
        rec.setdefault("got", []).append(msg)

    @manager.task("got-list")
    async def got_list(msg: GotList) -> None:
        rec.setdefault("got-list", []).append(msg)

    @manager.task("got-stream")
    async def got_stream(msg: GotStream) -> None:
        items = [item async for item in msg.value.aiter(chunk_size=3)]
        rec.setdefault("got-stream", []).append(items)

    @manager.task("failed")
    async def failed(msg: Failed) -> None:
        rec.setdefault("failed", []).append(msg)

    return rec


async def test_big_input_and_result_travel_by_reference(
    manager: InMemoryTaskManager,
    seen: dict[str, list[Any]],
    redis_client: aioredis.Redis,
    config: MageflowConfig,
) -> None:
    cb = await mageflow.asign("got", tag="cb")
    sig = await mageflow.asign("echo", success_callbacks=[cb])
    big = "a" * (THRESHOLD * 3)
    await sig.aio_run_no_wait(Blob(data=big, n=3))
    await manager.wait_idle()

    (received,) = seen["echo"]
    assert received.data == big and received.n == 3
    (called,) = seen["got"]
    assert called.value == {"data": big * 2, "n": 3} and called.tag == "cb"
    # what the engine carried: references only
    runs = {r.task_name: r for r in manager.runs.values()}
    assert REFERENCE_TAG in runs["echo"].input and _small(runs["echo"].input)
    assert _small(runs["got"].input)
    assert REFERENCE_TAG in runs["echo"].result
    blob = f"{config.key_prefix}blob:{sig.key}"
    assert set(await redis_client.hkeys(blob)) == {"in", "out"}
    assert 0 < await redis_client.pttl(blob) <= config.active_ttl.total_seconds() * 1000

    await mageflow.remove(sig.key)
    assert not await redis_client.exists(blob)


async def test_small_payloads_stay_inline(
    manager: InMemoryTaskManager,
    seen: dict[str, list[Any]],
    redis_client: aioredis.Redis,
    config: MageflowConfig,
) -> None:
    cb = await mageflow.asign("got")
    sig = await mageflow.asign("echo", success_callbacks=[cb])
    await sig.aio_run_no_wait(Blob(data="small"))
    await manager.wait_idle()
    assert seen["got"][0].value == {"data": "smallsmall", "n": 0}
    assert not [k async for k in redis_client.scan_iter(match=f"{config.key_prefix}blob:*")]


async def test_error_callback_gets_big_input_with_its_own_kwargs(
    manager: InMemoryTaskManager, seen: dict[str, list[Any]]
) -> None:
    on_error = await mageflow.asign("failed", tag="err", n=9)
    sig = await mageflow.asign("fail", error_callbacks=[on_error])
    big = "b" * (THRESHOLD * 2)
    await sig.aio_run_no_wait(Blob(data=big, n=1))
    await manager.wait_idle()
    (got,) = seen["failed"]
    assert got.data == big and got.n == 9 and got.tag == "err"


async def test_swarm_results_reach_callback_in_order_from_the_results_hash(
    manager: InMemoryTaskManager, seen: dict[str, list[Any]]
) -> None:
    ok = await mageflow.asign("got-list")
    stream = await mageflow.asign("got-stream")
    sw = await mageflow.aswarm(success_callbacks=[ok, stream])
    tasks = ["member"] * 20 + ["big-member"] * 2 + ["fail"]
    await sw.aio_run_tasks_in_swarm(tasks, [Blob(data="", n=i) for i in range(len(tasks))])
    await sw.aio_run_no_wait(Blob(data=""))
    await sw.close_swarm()
    await manager.wait_idle()

    (got,) = seen["got-list"]
    expected: list[Any] = [f"{i}:" + "x" * 500 for i in range(20)]
    expected += [f"{i}:" + "y" * (THRESHOLD + 10) for i in (20, 21)]
    expected += [None]
    assert got.value == expected  # 23 members, > 5 x threshold in all, chunks of 7
    assert seen["got-stream"] == [expected]
    for run in manager.runs.values():
        if run.task_name in ("got-list", "got-stream"):
            assert _small(run.input)


async def test_nested_swarm_and_chain_results_resolve(
    manager: InMemoryTaskManager, seen: dict[str, list[Any]]
) -> None:
    ok = await mageflow.asign("got")
    inner = await mageflow.aswarm(is_swarm_closed=False)
    await inner.aio_run_tasks_in_swarm(
        ["member", "member"], [Blob(data="", n=0), Blob(data="", n=1)]
    )
    await inner.close_swarm()
    chain = await mageflow.achain([inner, "got"], success=[ok])
    await chain.aio_run_no_wait(Blob(data=""))
    await manager.wait_idle()
    step, last = seen["got"]
    assert step.value == ["0:" + "x" * 500, "1:" + "x" * 500]
    assert last.value is None  # the chain's callback: the last step returned None


async def test_big_swarm_message_is_stored_once_and_reaches_every_member(
    manager: InMemoryTaskManager,
    seen: dict[str, list[Any]],
    redis_client: aioredis.Redis,
    config: MageflowConfig,
) -> None:
    sw = await mageflow.aswarm(tasks=["echo"] * 3, is_swarm_closed=True, n=4)
    big = "m" * (THRESHOLD * 2)
    await sw.aio_run_no_wait(Blob(data=big))
    await manager.wait_idle()
    assert [(m.data, m.n) for m in seen["echo"]] == [(big, 4)] * 3
    assert await redis_client.hkeys(f"{config.key_prefix}blob:{sw.key}") == ["in"]
    for run in manager.runs.values():
        assert _small(run.input)


async def _ran_big_echo_and_swarm(
    manager: InMemoryTaskManager, member: str
) -> tuple[TaskSignature, SwarmSignature]:
    """An ``echo`` with a big input and a closed swarm of two ``member`` tasks, both run."""
    sig = await mageflow.asign("echo")
    sw = await mageflow.aswarm(tasks=[member, member], is_swarm_closed=True)
    await sig.aio_run_no_wait(Blob(data="c" * THRESHOLD))
    await sw.aio_run_no_wait(Blob(data=""))
    await manager.wait_idle()
    return sig, sw


async def test_stored_results_resolve_for_readers(
    manager: InMemoryTaskManager,
    seen: dict[str, list[Any]],
    redis_client: aioredis.Redis,
    config: MageflowConfig,
) -> None:
    sig, sw = await _ran_big_echo_and_swarm(manager, "member")
    store = mageflow.get_runtime().store
    res = json.loads(await redis_client.hget(f"{config.key_prefix}sig:{sig.key}", "res"))
    assert REFERENCE_TAG in res  # the result is stored once, in blob:<key>
    assert await _payloads.resolve(store, res) == {"data": "c" * THRESHOLD * 2, "n": 0}
    res = json.loads(await redis_client.hget(f"{config.key_prefix}sig:{sw.key}", "res"))
    assert await _payloads.resolve(store, res) == ["0:" + "x" * 500] * 2


async def test_a_reference_whose_data_expired_is_an_error_not_none(
    manager: InMemoryTaskManager,
    seen: dict[str, list[Any]],
    redis_client: aioredis.Redis,
    config: MageflowConfig,
) -> None:
    # what a callback sees when it runs after its parent's TTL ran out: a clear
    # error, never a list of None that reads as if every member had failed
    sig, sw = await _ran_big_echo_and_swarm(manager, "member")
    store = mageflow.get_runtime().store
    p = config.key_prefix
    swarm_ref = json.loads(await redis_client.hget(f"{p}sig:{sw.key}", "res"))
    blob_ref = json.loads(await redis_client.hget(f"{p}sig:{sig.key}", "res"))
    # as the TTLs would: the signatures and what they own go at once
    await redis_client.delete(f"{p}sig:{sw.key}", f"{p}swarm:{sw.key}:res", f"{p}blob:{sig.key}")
    with pytest.raises(StoreError, match=f"results of swarm '{sw.key}' are gone"):
        await _payloads.resolve(store, swarm_ref)
    with pytest.raises(StoreError, match=f"payload of signature '{sig.key}'.* is gone"):
        await _payloads.resolve(store, blob_ref)
    with pytest.raises(StoreError, match="are gone"):
        await SwarmResults.model_validate(swarm_ref).aload()


async def test_a_blob_lives_as_long_as_its_signature(
    manager: InMemoryTaskManager,
    seen: dict[str, list[Any]],
    redis_client: aioredis.Redis,
    config: MageflowConfig,
) -> None:
    p = config.key_prefix
    done_ms = int(config.done_ttl.total_seconds() * 1000)
    sig, sw = await _ran_big_echo_and_swarm(manager, "big-member")
    assert sorted(await redis_client.hkeys(f"{p}blob:{sig.key}")) == ["in", "out"]
    # the signature ended: its payloads go when it does
    assert 0 < await redis_client.pttl(f"{p}blob:{sig.key}") <= done_ms
    assert 0 < await redis_client.pttl(f"{p}sig:{sig.key}") <= done_ms
    # a member's result is the swarm's to hand on: it keeps the TTL it was written with
    member = (await redis_client.lrange(f"{p}swarm:{sw.key}:m", 0, 0))[0]
    assert await redis_client.hkeys(f"{p}blob:{member}") == ["out"]
    assert await redis_client.pttl(f"{p}blob:{member}") > done_ms


async def test_a_retried_signature_still_has_its_big_input(
    manager: InMemoryTaskManager,
    seen: dict[str, list[Any]],
    redis_client: aioredis.Redis,
    config: MageflowConfig,
) -> None:
    done_ms = int(config.done_ttl.total_seconds() * 1000)
    sig = await mageflow.asign("fail")
    await sig.aio_run_no_wait(Blob(data="f" * THRESHOLD))
    await manager.wait_idle()
    blob = f"{config.key_prefix}blob:{sig.key}"
    assert 0 < await redis_client.pttl(blob) <= done_ms
    await mageflow.retry(sig.key)
    await manager.wait_idle()
    failed = await mageflow.load_signature(sig.key)
    assert failed is not None and failed.error is not None
    # the body ran again, on the stored input
    assert failed.error.message == "no"
    assert [r.status for r in manager.runs.values() if r.signature_key == sig.key] == [
        "failed",
        "failed",
    ]
