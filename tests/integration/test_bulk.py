"""Bulk creation (issue 10): ``mageflow.asign_many`` and big ``aio_run_tasks_in_swarm`` calls."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import mageflow
import pytest
import redis.asyncio as aioredis
from mageflow import (
    BulkValidationError,
    MageflowConfig,
    MageflowValidationError,
    SignatureNotFoundError,
    SignatureStatus,
    SwarmConfig,
    _bulk,
)
from mageflow._store.keys import F
from mageflow.inmemory import InMemoryTaskManager, NonRetryableError
from pydantic import BaseModel

from tests.integration._helpers import Raw
from tests.integration.container_models import Loose, Num, Results

pytestmark = pytest.mark.usefixtures("runtime")


class Order(BaseModel):
    order_id: int
    shop: str = "eu"


@pytest.fixture
def seen(manager: InMemoryTaskManager) -> dict[str, list[Any]]:
    rec: dict[str, list[Any]] = {}

    @manager.task("order")
    async def order(msg: Order) -> int:
        rec.setdefault("order", []).append(msg)
        return msg.order_id

    @manager.task("work")
    async def work(msg: Num) -> int:
        return msg.x * 10

    @manager.task("collect")
    async def collect(msg: Results) -> None:
        rec.setdefault("collect", []).append(msg)

    return rec


async def _count(redis_client: aioredis.Redis, config: MageflowConfig) -> int:
    return len([k async for k in redis_client.scan_iter(match=f"{config.key_prefix}sig:*")])


async def test_asign_many_stores_one_signature_per_item(
    manager: InMemoryTaskManager, seen: dict[str, list[Any]]
) -> None:
    ok = await mageflow.asign("collect")
    items: list[Any] = [{"order_id": i} for i in range(2500)]
    items[7] = Order(order_id=7, shop="us")
    sigs = await mageflow.asign_many("order", items, shop="de", success_callbacks=[ok])
    assert len(sigs) == 2500 and len({s.key for s in sigs}) == 2500

    loaded = await mageflow.load_signature(sigs[3].key)
    assert loaded is not None
    assert dict(loaded.kwargs) == {"order_id": 3, "shop": "de"}
    assert loaded.success_callbacks == [ok.key]
    assert dict(sigs[7].kwargs) == {"order_id": 7, "shop": "us"}  # the item wins
    assert loaded.model_validators == sigs[3].model_validators

    await sigs[3].aio_run_no_wait()
    await manager.wait_idle()
    assert seen["order"] == [Order(order_id=3, shop="de")]
    assert seen["collect"][0].mageflow_results == 3


async def test_bad_items_are_reported_by_index_and_field_and_nothing_is_stored(
    seen: dict[str, list[Any]], redis_client: aioredis.Redis, config: MageflowConfig
) -> None:
    before = await _count(redis_client, config)
    items: list[Any] = [{"order_id": i} for i in range(10)]
    items[2] = {"order_id": "not a number"}
    items[5] = "nope"
    items[8] = {"order_id": 8, "when": object()}
    with pytest.raises(BulkValidationError) as caught:
        await mageflow.asign_many("order", items)
    err = caught.value
    assert [(i, f) for i, f, _ in err.errors] == [(2, "order_id"), (5, ""), (8, "when")]
    assert err.field == "items[2].order_id"
    assert "items[5]: expected a mapping" in str(err)
    assert isinstance(err, MageflowValidationError)
    assert await _count(redis_client, config) == before


async def test_a_refused_batch_takes_the_stored_ones_with_it(
    seen: dict[str, list[Any]],
    redis_client: aioredis.Redis,
    config: MageflowConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    taken = await mageflow.asign("order")

    def keys() -> Iterator[str]:
        n = 0
        while True:
            n += 1
            # the second batch holds a key that is already stored
            yield taken.key if n == _bulk.BATCH + 5 else f"task-bulk-{n}"

    cb = await mageflow.asign("collect")
    before = await _count(redis_client, config)
    it = keys()
    monkeypatch.setattr(_bulk, "new_key", lambda kind: next(it))
    with pytest.raises(MageflowValidationError, match="already stored"):
        await mageflow.asign_many(
            "order", [{"order_id": i} for i in range(3 * _bulk.BATCH)], error_callbacks=[cb]
        )
    assert await _count(redis_client, config) == before
    # the batches stored before the refused one gave their count on the callback back
    assert int(await redis_client.hget(f"{config.key_prefix}sig:{cb.key}", F.refs) or 0) == 0


async def test_missing_callback_stores_nothing(
    seen: dict[str, list[Any]], redis_client: aioredis.Redis, config: MageflowConfig
) -> None:
    before = await _count(redis_client, config)
    with pytest.raises(SignatureNotFoundError, match="task-missing"):
        await mageflow.asign_many("order", [{"order_id": 1}], success_callbacks=["task-missing"])
    assert await _count(redis_client, config) == before


async def test_key_option_is_refused() -> None:
    with pytest.raises(MageflowValidationError, match="new key"):
        await mageflow.asign_many("order", [{}], key="mine")


async def test_thousands_of_tasks_in_a_swarm_complete_in_order(
    manager: InMemoryTaskManager, seen: dict[str, list[Any]]
) -> None:
    n = 2100
    ok = await mageflow.asign("collect")
    swarm = await mageflow.aswarm(success_callbacks=[ok], config=SwarmConfig(max_concurrency=50))
    await swarm.aio_run_tasks_in_swarm(["work"] * n, [{"x": i} for i in range(n)])
    await swarm.aio_run_no_wait()
    await swarm.close_swarm()
    await manager.wait_idle(timeout=120)
    (got,) = seen["collect"]
    assert got.mageflow_results == [i * 10 for i in range(n)]


async def test_asign_many_signatures_are_in_the_query_indexes(
    seen: dict[str, list[Any]],
) -> None:
    ok = await mageflow.asign("collect")
    sigs = await mageflow.asign_many(
        "order",
        [{"order_id": i} for i in range(5)],
        success_callbacks=[ok],
        task_identifiers={"batch": "b1"},
    )
    keys = {s.key for s in sigs}
    by_task = await mageflow.list_signatures(task="order", limit=100)
    assert keys <= {s.key for s in by_task}
    by_ident = await mageflow.list_signatures(identifiers={"batch": "b1"}, limit=100)
    assert {s.key for s in by_ident} == keys
    roots = {s.key for s in await mageflow.list_signatures(limit=100)}
    assert keys <= roots and ok.key not in roots  # a callback is not a root


async def test_a_shared_callback_waits_for_every_signature_of_the_call(
    manager: InMemoryTaskManager, seen: dict[str, list[Any]], raw: Raw
) -> None:
    # Each signature is one more parent of the shared callbacks, as with asign:
    # the first to settle must not skip the branch it did not take for the rest.
    @manager.task("maybe-fail")
    async def maybe_fail(msg: Num) -> int:
        if msg.fail:
            raise NonRetryableError(f"item {msg.x} failed")
        return msg.x

    @manager.task("on-error")
    async def on_error(msg: Loose) -> None:
        seen.setdefault("on-error", []).append(msg)

    ok = await mageflow.asign("collect")
    bad = await mageflow.asign("on-error")
    sigs = await mageflow.asign_many(
        "maybe-fail",
        [{"x": 0}, {"x": 1, "fail": True}, {"x": 2}],
        success_callbacks=[ok],
        error_callbacks=[bad],
    )
    assert await raw.client.hget(raw.sig_key(ok.key), F.refs) == "3"
    for sig in sigs:
        await sig.aio_run_no_wait()
        await manager.wait_idle()
    # the failed item fired the error callback although one had succeeded before it
    assert await _status(bad.key) == SignatureStatus.DONE
    assert await _status(ok.key) == SignatureStatus.DONE
    # a callback is one signature: it runs once, for the first parent that takes its branch
    assert [m.mageflow_results for m in seen["collect"]] == [0]
    assert len(seen["on-error"]) == 1


async def test_removing_what_asign_many_stored_gives_the_count_back(raw: Raw) -> None:
    cb = await mageflow.asign("collect")
    sigs = await mageflow.asign_many(
        "order", [{"order_id": 1}, {"order_id": 2}], success_callbacks=[cb], error_callbacks=[cb]
    )
    assert await raw.client.hget(raw.sig_key(cb.key), F.refs) == "2"  # once per signature
    for sig in sigs:
        await mageflow.remove(sig.key, with_success=False, with_error=False)
    assert await raw.client.hget(raw.sig_key(cb.key), F.refs) is None
    assert await _status(cb.key) == SignatureStatus.PENDING


async def _status(key: str) -> SignatureStatus:
    sig = await mageflow.load_signature(key)
    assert sig is not None
    return sig.task_status.status
