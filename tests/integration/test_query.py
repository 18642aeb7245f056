"""Queries over the store's indexes: status, task, identifiers, roots, stuck."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import mageflow
import pytest
import redis.asyncio as aioredis
from mageflow import MageflowConfig, MageflowRuntime, MageflowValidationError, SignatureStatus
from mageflow.inmemory import InMemoryTaskManager
from pydantic import BaseModel

from tests.integration._helpers import Raw

pytestmark = pytest.mark.usefixtures("runtime")


class Num(BaseModel):
    n: int


@pytest.fixture
def tasks(manager: InMemoryTaskManager) -> asyncio.Event:
    gate = asyncio.Event()

    @manager.task("work", input_validator=Num)
    async def work(msg: Num) -> int:
        await gate.wait()
        return msg.n

    return gate


async def _keys(**kw: object) -> list[str]:
    return [s.key for s in await mageflow.list_signatures(**kw)]  # type: ignore[arg-type]


async def test_list_by_task_status_and_identifier(tasks: asyncio.Event) -> None:
    a = await mageflow.asign("work", task_identifiers={"order": 1042, "shop": "eu"})
    await asyncio.sleep(0.005)  # distinct creation times (ms): the order is by time
    b = await mageflow.asign("work", task_identifiers={"order": 7})
    c = await mageflow.asign("other", task_identifiers={"order": "1042"})
    assert await _keys(task="work") == [b.key, a.key]  # newest first
    # a value matches by its text: the number 1042 and the string "1042"
    assert set(await _keys(identifiers={"order": 1042})) == {a.key, c.key}
    assert set(await _keys(identifiers=["order=1042"])) == {a.key, c.key}
    assert await _keys(identifiers={"order": 7}) == [b.key]
    assert await _keys(identifiers=["order=1042", "shop=eu"]) == [a.key]
    assert set(await _keys(status="pending")) == {a.key, b.key, c.key}
    await a.aio_run_no_wait(Num(n=1))
    await asyncio.sleep(0.05)
    assert await _keys(status="active") == [a.key]
    assert set(await _keys(status="pending")) == {b.key, c.key}
    assert await _keys(task="work", status="active") == [a.key]
    tasks.set()
    assert await mageflow.result(a.key, timeout=5) == 1
    assert await _keys(status=SignatureStatus.DONE) == [a.key]
    assert await _keys(status="active") == []
    assert await _keys(task="work", limit=1) == [b.key]


async def test_roots_exclude_members_and_callbacks(tasks: asyncio.Event) -> None:
    cb = await mageflow.asign("work")
    step1 = await mageflow.asign("work")
    ch = await mageflow.achain([step1, "work"], success=[cb])
    await asyncio.sleep(0.005)  # distinct creation times (ms): the order is by time
    sw = await mageflow.aswarm()
    member = await mageflow.asign("work")
    await sw.aio_run_in_swarm(member)
    await asyncio.sleep(0.005)
    lone = await mageflow.asign("work")
    roots = await _keys()
    assert roots == [lone.key, sw.key, ch.key]
    assert await _keys(roots=True, task="mageflow.chain") == [ch.key]


async def test_bad_query_input_is_named(tasks: asyncio.Event) -> None:
    with pytest.raises(MageflowValidationError) as info:
        await mageflow.list_signatures(status="bogus")
    assert info.value.field == "status"
    with pytest.raises(MageflowValidationError) as info:
        await mageflow.list_signatures(identifiers=["no-equals"])
    assert info.value.field == "identifier"
    with pytest.raises(MageflowValidationError) as info:
        await mageflow.list_signatures(limit=0)
    assert info.value.field == "limit"


async def test_removed_and_expired_signatures_drop_out(tasks: asyncio.Event, raw: Raw) -> None:
    a = await mageflow.asign("work", task_identifiers={"o": 1})
    b = await mageflow.asign("work", task_identifiers={"o": 1})
    await a.remove()
    await raw.client.delete(raw.sig_key(b.key))  # as if it expired
    assert await _keys(task="work") == []
    assert await _keys(identifiers={"o": 1}) == []
    snap = await raw.snapshot(indexes=True)
    assert not any(k.endswith("idx:t:work") for k in snap)  # pruned when met


async def test_indexes_are_trimmed_by_ttl_and_expire(
    redis_client: aioredis.Redis, manager: InMemoryTaskManager, key_prefix: str
) -> None:
    config = MageflowConfig(key_prefix=key_prefix + "ttl:", active_ttl=timedelta(milliseconds=300))
    rt = mageflow.configure(redis_client, manager, config)
    try:
        old = await rt.sign("t")
        await asyncio.sleep(0.4)
        new = await rt.sign("t")
        members = await redis_client.zrange(rt.store.keys.by_task("t"), 0, -1)
        assert members == [new.key]  # the old entry was trimmed by the write
        assert old.key not in await redis_client.zrange(rt.store.keys.roots, 0, -1)
        ttl = await redis_client.pttl(rt.store.keys.by_task("t"))
        assert 0 < ttl <= 300
    finally:
        async for k in redis_client.scan_iter(match=f"{key_prefix}ttl:*"):
            await redis_client.delete(k)


async def test_stuck_candidates(tasks: asyncio.Event, runtime: MageflowRuntime) -> None:
    a = await mageflow.asign("work")
    await a.aio_run_no_wait(Num(n=1))
    await asyncio.sleep(0.05)
    assert await mageflow.stuck_signatures(older_than=timedelta(hours=1)) == []
    found = await mageflow.stuck_signatures(older_than=timedelta(0))
    assert [(s.signature.key, s.reason) for s in found] == [(a.key, "active without change")]
    # a claimed dispatch whose run never arrived
    b = await mageflow.asign("work")
    await runtime.store.dispatch(b.key, {"n": 1}, "lost-dispatch", "")
    found = await mageflow.stuck_signatures(
        older_than=timedelta(hours=1), claim_older_than=timedelta(0)
    )
    assert [(s.signature.key, s.reason) for s in found] == [
        (b.key, "dispatch claimed, run never arrived")
    ]
    tasks.set()
