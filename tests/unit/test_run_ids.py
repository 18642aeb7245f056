"""mageflow._run_ids: which run ids a call takes, and when they are written on their own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, cast

from mageflow._run_ids import RunIds, SentRun
from mageflow._store.redis_store import RedisStore


class Store:
    def __init__(self) -> None:
        self.writes: list[list[SentRun]] = []

    async def record_runs(self, sent: Sequence[SentRun]) -> None:
        self.writes.append(list(sent))


def ids(n: int, start: int = 0) -> list[SentRun]:
    return [(f"k{i}", f"d{i}", f"r{i}") for i in range(start, start + n)]


def recorder(linger: float) -> tuple[RunIds, Store]:
    store = Store()
    return RunIds(cast(RedisStore, cast(Any, store)), linger=linger), store


async def test_a_call_takes_the_oldest_ids_a_bounded_number_at_a_time() -> None:
    run_ids, store = recorder(linger=60)
    run_ids.add(ids(100))
    first = run_ids.take()
    assert first == ids(64)
    assert run_ids.take() == ids(36, start=64)
    assert run_ids.take() == []
    assert store.writes == []


async def test_ids_a_failed_call_took_go_back_in_front() -> None:
    run_ids, _ = recorder(linger=60)
    run_ids.add(ids(3))
    taken = run_ids.take()
    run_ids.add(ids(1, start=3))
    run_ids.give_back(taken)
    assert run_ids.take() == ids(4)


async def test_the_timer_waits_while_calls_keep_coming() -> None:
    run_ids, store = recorder(linger=0.05)
    run_ids.add(ids(2))
    # a call came just now (it took nothing of these): the worker is busy, not idle
    deadline = time.monotonic() + 0.12
    while time.monotonic() < deadline:
        run_ids._last_call = time.monotonic()
        await asyncio.sleep(0.01)
    assert store.writes == []
    # no call for longer than linger: one write of both
    await asyncio.sleep(0.2)
    assert store.writes == [ids(2)]
    assert len(run_ids) == 0


async def test_flush_writes_everything_waiting() -> None:
    run_ids, store = recorder(linger=60)
    run_ids.add(ids(1500))
    await run_ids.flush()
    assert [len(w) for w in store.writes] == [1000, 500]
    assert len(run_ids) == 0
