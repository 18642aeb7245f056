"""Issue 7: finality from MageFlow's own count, and worker store calls that ride out outages.

The engine here is a stub that records dispatches, so each test hands
``execute_run`` exactly the attempts a real engine would deliver (a lost
worker is an attempt that never reaches FINISH).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import mageflow
import pytest
import redis.asyncio as aioredis
from mageflow import MageflowConfig, MageflowRuntime, NonRetryable
from mageflow._store.keys import F
from mageflow.engine import (
    CancelRequest,
    DescribeRequest,
    DispatchRequest,
    DispatchResult,
    RunRequest,
    RunState,
    RunStatusRequest,
    RunStatusResult,
    TaskDescription,
    TaskManager,
)
from thirdmagic.errors import StoreUnavailableError
from thirdmagic.signature import Signature
from thirdmagic.status import LifecycleEvent

from tests.integration._helpers import Raw


class RecordingManager(TaskManager):
    """An engine that only queues: the test delivers each run itself."""

    def __init__(self) -> None:
        self.sent: list[DispatchRequest] = []
        self.states: dict[str, RunState] = {}

    async def run_status(self, request: RunStatusRequest) -> RunStatusResult:
        return RunStatusResult(
            states={r: self.states.get(r, RunState.UNKNOWN) for r in request.run_ids}
        )

    async def dispatch(self, request: DispatchRequest) -> DispatchResult:
        self.sent.append(request)
        return DispatchResult(run_id=f"run-{len(self.sent)}")

    async def cancel(self, request: CancelRequest) -> None:
        return None

    def describe(self, request: DescribeRequest) -> TaskDescription | None:
        return None


@pytest.fixture
async def engine(
    redis_client: aioredis.Redis, config: MageflowConfig
) -> AsyncIterator[tuple[MageflowRuntime, RecordingManager]]:
    manager = RecordingManager()
    rt = mageflow.configure(
        redis_client,
        manager,
        config.model_copy(update={"store_retry_window": timedelta(seconds=5)}),
    )
    await rt.store.prepare()
    try:
        yield rt, manager
    finally:
        async for k in redis_client.scan_iter(match=f"{config.key_prefix}*"):
            await redis_client.delete(k)


@pytest.fixture
def raw(redis_client: aioredis.Redis, engine: tuple[MageflowRuntime, RecordingManager]) -> Raw:
    return Raw(redis_client, engine[0])


class Body:
    """A task body that fails its first ``failures`` calls."""

    def __init__(self, failures: int, exc: type[Exception] = RuntimeError) -> None:
        self.failures = failures
        self.exc = exc
        self.calls = 0

    async def __call__(self, arg: Any, sig: Signature) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc(f"failure {self.calls}")
        return {"ok": self.calls}


def request(
    sent: DispatchRequest, run_id: str, attempt: int, body: Body, **options: Any
) -> RunRequest:
    return RunRequest(
        signature_key=sent.signature_key,
        dispatch_id=sent.dispatch_id,
        run_id=run_id,
        payload=sent.input,
        body=body,
        attempt=f"{run_id}#{attempt}",
        **options,
    )


async def started(rt: MageflowRuntime, manager: RecordingManager) -> tuple[str, str, str]:
    """A signature with a success and an error callback, dispatched once."""
    ok = await mageflow.asign("on-ok")
    bad = await mageflow.asign("on-bad")
    sig = await mageflow.asign("work", success_callbacks=[ok], error_callbacks=[bad])
    await sig.aio_run_no_wait({"n": 1})
    return sig.key, ok.key, bad.key


def sent_to(manager: RecordingManager, key: str) -> list[DispatchRequest]:
    return [r for r in manager.sent if r.signature_key == key]


async def test_lost_workers_spend_no_retry_and_a_retry_the_engine_will_not_make_is_a_new_run(
    engine: tuple[MageflowRuntime, RecordingManager], raw: Raw
) -> None:
    # issue 7 case 5: retries=2, the engine (3 attempts) loses the worker
    # twice, then the body fails once: MageFlow retries it anyway.
    rt, manager = engine
    key, ok, bad = await started(rt, manager)
    first = sent_to(manager, key)[0]
    body = Body(failures=1)
    # attempts 1 and 2 were lost with their worker after BEGIN: nothing recorded
    for _lost in (1, 2):
        assert (await rt.store.begin(key, first.dispatch_id, "run-A", first.input)).decision == (
            "run"
        )
    with pytest.raises(RuntimeError, match="failure 1"):
        await rt.execute_run(request(first, "run-A", 3, body, retries=2, engine_will_retry=False))
    stored = await raw.hash(key)
    assert stored[F.status] == "active"
    assert stored[F.failures] == "1"
    assert F.run not in stored
    again = sent_to(manager, key)
    assert len(again) == 2, "the retry is dispatched as a new run"
    retry = again[1]
    assert retry.dispatch_id == stored[F.dispatch]
    assert retry.input == first.input
    # a late attempt of the old run is no longer the signature's run
    late = await rt.execute_run(request(first, "run-A", 4, Body(0), retries=2))
    assert (late.ran, late.reason) == (False, "duplicate")
    outcome = await rt.execute_run(request(retry, "run-B", 1, body, retries=2))
    assert outcome.ran
    assert await raw.status(key) == "done"
    assert [r.signature_key for r in manager.sent].count(ok) == 1
    assert [r.signature_key for r in manager.sent].count(bad) == 0


async def test_the_budget_is_spent_exactly_retries_times(
    engine: tuple[MageflowRuntime, RecordingManager], raw: Raw
) -> None:
    rt, manager = engine
    key, ok, bad = await started(rt, manager)
    first = sent_to(manager, key)[0]
    body = Body(failures=10)
    for attempt in (1, 2):
        with pytest.raises(RuntimeError):
            await rt.execute_run(request(first, "run-A", attempt, body, retries=2))
        assert await raw.status(key) == "active"
    with pytest.raises(RuntimeError, match="failure 3"):
        await rt.execute_run(request(first, "run-A", 3, body, retries=2, engine_will_retry=False))
    stored = await raw.hash(key)
    assert stored[F.status] == "failed"
    assert "failure 3" in stored[F.error]
    assert [r.signature_key for r in manager.sent].count(bad) == 1
    assert [r.signature_key for r in manager.sent].count(ok) == 0


async def test_budget_spent_while_the_engine_would_retry_tells_it_not_to(
    engine: tuple[MageflowRuntime, RecordingManager], raw: Raw
) -> None:
    rt, manager = engine
    key, _, _ = await started(rt, manager)
    first = sent_to(manager, key)[0]
    with pytest.raises(NonRetryable, match="retries exhausted"):
        await rt.execute_run(request(first, "run-A", 1, Body(1), retries=0))
    assert await raw.status(key) == "failed"


async def test_a_repeated_failure_record_counts_once(
    engine: tuple[MageflowRuntime, RecordingManager], raw: Raw
) -> None:
    # FINISH is retried across connection loss: the same attempt may arrive twice
    rt, manager = engine
    key, _, _ = await started(rt, manager)
    first = sent_to(manager, key)[0]
    store = rt.store
    await store.begin(key, first.dispatch_id, "run-A", first.input)
    for _ in range(3):
        code, outbox = await store.finish(
            key, succeeded=False, run_id="run-A", payload="x", attempt="run-A#1", retries=2
        )
        assert (code, outbox) == ("retry", [])
    assert (await raw.hash(key))[F.failures] == "1"
    for _ in range(2):
        code, outbox = await store.finish(
            key,
            succeeded=False,
            run_id="run-A",
            payload="x",
            attempt="run-A#2",
            retries=2,
            redispatch=True,
        )
        assert code == "retry"
        assert [e.key for e in outbox] == [key]
    # the retry's own dispatch is listed in the pending index until it arrives
    assert await store.client.zscore(store.keys.pending, raw.sig_key(key)) is not None
    code, _ = await store.finish(
        key, succeeded=False, run_id="run-A", payload="x", attempt="run-A#3", retries=2
    )
    assert code == "stale"
    assert (await raw.hash(key))[F.failures] == "2"


async def test_a_new_run_of_the_signature_gets_the_whole_budget(
    engine: tuple[MageflowRuntime, RecordingManager], raw: Raw
) -> None:
    rt, manager = engine
    key, _, _ = await started(rt, manager)
    first = sent_to(manager, key)[0]
    with pytest.raises(RuntimeError):
        await rt.execute_run(request(first, "run-A", 1, Body(1), retries=1))
    assert (await raw.hash(key))[F.failures] == "1"
    await rt.apply(key, LifecycleEvent.INTERRUPT)
    await rt.apply(key, LifecycleEvent.RESUME)
    replay = sent_to(manager, key)[-1]
    outcome = await rt.execute_run(request(replay, "run-B", 1, Body(0), retries=1))
    assert outcome.ran
    assert F.failures not in await raw.hash(key)


class FlakyStore:
    """Wraps one store method: the first ``n`` calls fail as if Redis were down."""

    def __init__(self, rt: MageflowRuntime, name: str, n: int) -> None:
        self.real = getattr(rt.store, name)
        self.left = n
        self.calls = 0
        setattr(rt.store, name, self)

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.left != 0:
            self.left -= 1
            raise StoreUnavailableError("redis is unreachable (test)")
        return await self.real(*args, **kwargs)


@pytest.mark.parametrize("method", ["begin", "finish"])
async def test_worker_store_calls_ride_out_an_outage(
    engine: tuple[MageflowRuntime, RecordingManager], raw: Raw, method: str
) -> None:
    rt, manager = engine
    key, ok, _ = await started(rt, manager)
    first = sent_to(manager, key)[0]
    flaky = FlakyStore(rt, method, 4)
    outcome = await rt.execute_run(request(first, "run-A", 1, Body(0), retries=1))
    assert outcome.ran
    assert flaky.calls == 5
    assert await raw.status(key) == "done"
    assert F.failures not in await raw.hash(key)
    assert [r.signature_key for r in manager.sent].count(ok) == 1


async def test_failure_record_rides_out_an_outage_and_spends_one_retry(
    engine: tuple[MageflowRuntime, RecordingManager], raw: Raw
) -> None:
    rt, manager = engine
    key, _, _ = await started(rt, manager)
    first = sent_to(manager, key)[0]
    FlakyStore(rt, "finish", 3)
    with pytest.raises(RuntimeError):
        await rt.execute_run(request(first, "run-A", 1, Body(1), retries=1))
    stored = await raw.hash(key)
    assert (stored[F.status], stored[F.failures]) == ("active", "1")


@pytest.mark.parametrize("engine_will_retry", [True, False])
async def test_an_outage_longer_than_the_window_is_no_failure_of_the_task(
    engine: tuple[MageflowRuntime, RecordingManager], raw: Raw, engine_will_retry: bool
) -> None:
    rt, manager = engine
    key, _, bad = await started(rt, manager)
    first = sent_to(manager, key)[0]
    FlakyStore(rt, "finish", -1)
    # the run's deadline bounds the window (5 s here)
    options: dict[str, Any] = {
        "retries": 1,
        "engine_will_retry": engine_will_retry,
        "deadline": time.monotonic() + 1.5,
    }
    if engine_will_retry:
        with pytest.raises(StoreUnavailableError):
            await rt.execute_run(request(first, "run-A", 1, Body(0), **options))
    else:
        outcome = await rt.execute_run(request(first, "run-A", 1, Body(0), **options))
        assert (outcome.ran, outcome.reason) == (False, "store-unavailable")
    stored = await raw.hash(key)
    # left as it was: active, owned by the run, nothing counted, no callback
    assert (stored[F.status], stored[F.run]) == ("active", "run-A")
    assert F.failures not in stored
    assert bad not in [r.signature_key for r in manager.sent]


async def test_the_reconciler_resends_a_retry_whose_new_run_the_engine_lost(
    engine: tuple[MageflowRuntime, RecordingManager], raw: Raw
) -> None:
    # the retry made as a new run is a claim like any other: listed in the
    # pending index until its run begins, so the reconciler watches it
    rt, manager = engine
    key, ok, _ = await started(rt, manager)
    first = sent_to(manager, key)[0]
    body = Body(failures=1)
    with pytest.raises(RuntimeError):
        await rt.execute_run(request(first, "run-A", 1, body, retries=1, engine_will_retry=False))
    retry = sent_to(manager, key)[1]
    manager.states[f"run-{len(manager.sent)}"] = RunState.FAILED  # lost before it began
    report = await rt.reconcile(older_than=timedelta(0))
    assert report.resent == 1
    again = sent_to(manager, key)
    assert len(again) == 3
    assert again[2].dispatch_id == retry.dispatch_id
    outcome = await rt.execute_run(request(again[2], "run-C", 1, body, retries=1))
    assert outcome.ran
    assert await raw.status(key) == "done"
    assert [r.signature_key for r in manager.sent].count(ok) == 1
