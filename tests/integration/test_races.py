"""Many coroutines racing on one signature end in a consistent state."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import mageflow
import pytest
from mageflow import InvalidTransitionError, MageflowRuntime, RunRequest, SignatureStatus
from mageflow.inmemory import InMemoryTaskManager
from thirdmagic import LifecycleEvent

from tests.integration._helpers import Raw
from tests.integration.models import ExplicitFormCallback, OrderMsg

pytestmark = pytest.mark.usefixtures("runtime")

N = 50
VALID = {s.value for s in SignatureStatus}


def _assert_consistent(stored: dict[str, str]) -> None:
    assert stored["_v"] == "1"
    assert stored["s"] in VALID
    if "ls" in stored:
        assert stored["ls"] in VALID


def _register(manager: InMemoryTaskManager, counts: dict[str, int]) -> None:
    @manager.task("work", input_validator=OrderMsg)
    async def work(msg: OrderMsg) -> int:
        counts["work"] = counts.get("work", 0) + 1
        await asyncio.sleep(0.005)
        return msg.order_id

    @manager.task("on-ok", input_validator=ExplicitFormCallback)
    async def on_ok(msg: ExplicitFormCallback) -> None:
        counts["on-ok"] = counts.get("on-ok", 0) + 1
        counts["on-ok-total"] = msg.total


@pytest.mark.parametrize("seed", range(12))
async def test_suspend_resume_interrupt_race(
    seed: int, manager: InMemoryTaskManager, raw: Raw
) -> None:
    counts: dict[str, int] = {}
    _register(manager, counts)
    ok = await mageflow.asign("on-ok")
    sig = await mageflow.asign("work", success_callbacks=[ok])
    await sig.suspend()
    await sig.aio_run_no_wait(OrderMsg(order_id=42))  # parked

    rnd = random.Random(seed)
    calls = []
    for _ in range(N):
        op = rnd.choice(["suspend", "resume", "interrupt"])
        if op == "suspend":
            calls.append(mageflow.pause(sig.key))
        elif op == "resume":
            calls.append(mageflow.resume(sig.key))
        else:
            calls.append(mageflow.pause(sig.key, mageflow.PauseActionTypes.INTERRUPT))
    results = await asyncio.gather(*calls, return_exceptions=True)
    unexpected = [r for r in results if r is not None and not isinstance(r, InvalidTransitionError)]
    assert unexpected == []
    await manager.wait_idle()
    _assert_consistent(await raw.hash(sig.key))

    # Whatever state the race left, resuming drives the signature to done.
    for _ in range(20):
        status = await raw.status(sig.key)
        if status == "done":
            break
        if status in ("suspended", "interrupted"):
            await mageflow.resume(sig.key)
        await manager.wait_idle()
    assert await raw.status(sig.key) == "done"
    assert counts["on-ok"] == 1
    assert counts["on-ok-total"] == 42
    assert await raw.status(ok.key) == "done"
    assert counts["work"] >= 1


async def test_concurrent_runs_of_one_signature_execute_once(
    manager: InMemoryTaskManager, raw: Raw
) -> None:
    counts: dict[str, int] = {}
    _register(manager, counts)
    ok = await mageflow.asign("on-ok")
    sig = await mageflow.asign("work", success_callbacks=[ok])
    results = await asyncio.gather(
        *(sig.aio_run_no_wait(OrderMsg(order_id=i)) for i in range(N)), return_exceptions=True
    )
    assert all(r is None or isinstance(r, InvalidTransitionError) for r in results)
    await manager.wait_idle()
    assert counts["work"] == 1
    assert counts["on-ok"] == 1
    assert await raw.status(sig.key) == "done"


async def test_finish_race_records_exactly_one_outcome(runtime: MageflowRuntime, raw: Raw) -> None:
    cb_ok = await mageflow.asign("on-ok")
    cb_err = await mageflow.asign("on-err")
    sig = await mageflow.asign("t", success_callbacks=[cb_ok], error_callbacks=[cb_err])
    store = runtime.store
    await store.dispatch(sig.key, {}, "d", "")
    assert (await store.begin(sig.key, "d", "run-1", {})).decision == "run"

    calls = [
        store.finish(sig.key, succeeded=i % 2 == 0, run_id="run-1" if i % 3 else "run-x", payload=i)
        for i in range(N)
    ]
    results = await asyncio.gather(*calls)
    winners = [(i, r) for i, r in enumerate(results) if r[0] == "ok"]
    assert len(winners) == 1
    i, (_, outbox) = winners[0]
    final = await raw.hash(sig.key)
    _assert_consistent(final)
    assert final["s"] == ("done" if i % 2 == 0 else "failed")
    assert [e.key for e in outbox] == [cb_ok.key if i % 2 == 0 else cb_err.key]
    for j, (code, again) in enumerate(results):
        if j % 3 == 0:
            # A wrong run id never records anything and never gets the outbox.
            assert code in ("stale", "invalid", "already")
            assert again == []
        elif code == "already":
            assert (j % 2 == 0) == (i % 2 == 0)
            assert again == outbox
        elif code == "invalid":
            assert (j % 2 == 0) != (i % 2 == 0)
    # Only the winner's callback was claimed.
    claimed = cb_ok if i % 2 == 0 else cb_err
    other = cb_err if i % 2 == 0 else cb_ok
    assert "d" in await raw.hash(claimed.key)
    assert "d" not in await raw.hash(other.key)


async def test_begin_and_finish_race_with_redeliveries(
    runtime: MageflowRuntime, manager: InMemoryTaskManager, raw: Raw
) -> None:
    counts: dict[str, int] = {}
    _register(manager, counts)
    ok = await mageflow.asign("on-ok")
    sig = await mageflow.asign("work", success_callbacks=[ok])
    await runtime.store.dispatch(sig.key, {"order_id": 3}, "d-1", "")

    async def body(arg: Any, s: Any) -> int:
        counts["body"] = counts.get("body", 0) + 1
        await asyncio.sleep(0.002)
        return 3

    # Distinct deliveries of one dispatch, then redeliveries of the winner, all at once.
    requests = [
        RunRequest(
            signature_key=sig.key,
            dispatch_id="d-1",
            run_id=f"run-{i % 10}",
            payload={"order_id": 3},
            body=body,
            is_final_failure=lambda e: True,
            model=OrderMsg,
            task_name="work",
        )
        for i in range(N)
    ]
    outcomes = await asyncio.gather(
        *(runtime.execute_run(r) for r in requests),
        return_exceptions=True,
    )
    assert all(not isinstance(o, BaseException) for o in outcomes)
    await manager.wait_idle()
    assert await raw.status(sig.key) == "done"
    assert counts["on-ok"] == 1
    assert counts["on-ok-total"] == 3


async def test_interrupt_and_finish_race(runtime: MageflowRuntime, raw: Raw) -> None:
    sig = await mageflow.asign("t")
    store = runtime.store
    await store.dispatch(sig.key, {}, "d", "")
    await store.begin(sig.key, "d", "run-1", {})

    async def finish() -> str:
        code, _ = await store.finish(sig.key, succeeded=True, run_id="run-1", payload=1)
        return code

    async def interrupt() -> str:
        try:
            await store.transition(sig.key, LifecycleEvent.INTERRUPT, "", "x")
        except InvalidTransitionError:
            return "refused"
        return "interrupted"

    calls = [finish() if i == N // 2 else interrupt() for i in range(N)]
    results = await asyncio.gather(*calls)
    final = await raw.status(sig.key)
    finish_code = results[N // 2]
    if final == "done":
        assert finish_code == "ok"
    else:
        assert final == "interrupted"
        assert finish_code == "invalid"


async def test_concurrent_kwargs_updates_and_callbacks_lose_nothing(raw: Raw) -> None:
    sig = await mageflow.asign("t")
    cbs = [await mageflow.asign("cb") for _ in range(20)]
    copies = [await mageflow.load_signature(sig.key) for _ in range(N)]
    await asyncio.gather(
        *(c.kwargs.aupdate(**{f"k{i}": i}) for i, c in enumerate(copies) if c is not None),
        *(sig.add_callbacks(success=[cb]) for cb in cbs[:10]),
        *(sig.add_callbacks(errors=[cb]) for cb in cbs[10:]),
    )
    loaded = await mageflow.load_signature(sig.key)
    assert loaded is not None
    assert loaded.kwargs == {f"k{i}": i for i in range(N)}
    assert sorted(loaded.success_callbacks) == sorted(c.key for c in cbs[:10])
    assert sorted(loaded.error_callbacks) == sorted(c.key for c in cbs[10:])
