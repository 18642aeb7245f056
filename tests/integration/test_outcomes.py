"""result / aio_run / error details / cancel / retry / clone / progress against real Redis."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import mageflow
import pytest
import redis.asyncio as aioredis
from mageflow import (
    ErrorDetails,
    ErrorInfo,
    InvalidTransitionError,
    MageflowRuntime,
    MageflowValidationError,
    ResultTimeoutError,
    ReturnValue,
    SignatureCanceledError,
    SignatureFailedError,
    SignatureNotFoundError,
    SignatureStatus,
    TaskSignature,
)
from mageflow.inmemory import InMemoryTaskManager, NonRetryableError
from pydantic import BaseModel

from tests.integration._helpers import Raw, eventually

pytestmark = pytest.mark.usefixtures("runtime")

S = SignatureStatus


class Num(BaseModel):
    n: int


class Alert(BaseModel):
    n: int
    error: ErrorInfo[ErrorDetails | None] = None


class Plain(BaseModel):
    n: int


class Step(BaseModel):
    n: ReturnValue[int]


class Board:
    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_until = 0
        self.calls: dict[str, list[Any]] = {}

    def add(self, name: str, value: Any) -> None:
        self.calls.setdefault(name, []).append(value)


@pytest.fixture
def board(manager: InMemoryTaskManager) -> Board:
    b = Board()

    @manager.task("double", input_validator=Num)
    async def double(msg: Num) -> int:
        await b.gate.wait()
        b.add("double", msg.n)
        return msg.n * 2

    @manager.task("twice", input_validator=Step)
    async def twice(msg: Step) -> int:
        await b.gate.wait()
        return msg.n * 2

    @manager.task("got", input_validator=Step)
    async def got(msg: Step) -> None:
        b.add("got", msg.n)

    @manager.task("boom_step", input_validator=Step)
    async def boom_step(msg: Step) -> int:
        raise NonRetryableError(f"boom {msg.n}")

    @manager.task("boom", input_validator=Num)
    async def boom(msg: Num) -> int:
        await b.gate.wait()
        b.add("boom", msg.n)
        if len(b.calls["boom"]) > b.fail_until:
            raise NonRetryableError(f"boom {msg.n}")
        return msg.n

    @manager.task("alert", input_validator=Alert)
    async def alert(msg: Alert) -> None:
        b.add("alert", msg)

    @manager.task("plain", input_validator=Plain)
    async def plain(msg: Plain) -> None:
        b.add("plain", msg)

    @manager.task("slow", input_validator=Num)
    async def slow(msg: Num) -> int:
        b.add("slow", msg.n)
        await asyncio.sleep(30)
        return msg.n

    return b


# -- result -------------------------------------------------------------------


async def test_result_of_a_task(board: Board) -> None:
    sig = await mageflow.asign("double")
    await sig.aio_run_no_wait(Num(n=21))
    assert await mageflow.result(sig.key, timeout=5) == 42
    assert await sig.aio_result(timeout=5) == 42  # done: answered at once


async def test_aio_run_runs_and_waits(board: Board) -> None:
    sig = await mageflow.asign("double")
    assert await sig.aio_run(Num(n=4), timeout=5) == 8


async def test_result_of_a_chain_is_its_last_steps(board: Board) -> None:
    ch = await mageflow.achain(["twice", "twice", "twice"])
    assert await ch.aio_run({"n": 1}, timeout=5) == 8


async def test_result_of_a_swarm_is_the_ordered_list(board: Board) -> None:
    sw = await mageflow.aswarm()
    await sw.aio_run_tasks_in_swarm(["double", "double", "double"], [Num(n=3), Num(n=1), Num(n=2)])
    await sw.close_swarm()
    assert await sw.aio_run({}, timeout=5) == [6, 2, 4]


async def test_result_of_a_failed_task_raises_with_details(board: Board) -> None:
    sig = await mageflow.asign("boom")
    with pytest.raises(SignatureFailedError) as info:
        await sig.aio_run(Num(n=7), timeout=5)
    err = info.value
    assert err.status == "failed" and err.key == sig.key
    assert isinstance(err.error, ErrorDetails)
    assert err.error.type == "mageflow.engine.NonRetryable"
    assert err.error.message == "boom 7"
    assert "Traceback" in err.error.traceback
    assert err.error.signature_key == sig.key
    loaded = await mageflow.load_signature(sig.key)
    assert loaded is not None and loaded.error == err.error


async def test_result_of_a_failed_chain_names_the_failed_step(board: Board) -> None:
    first = await mageflow.asign("twice")
    bad = await mageflow.asign("boom_step")
    ch = await mageflow.achain([first, bad, "twice"])
    with pytest.raises(SignatureFailedError) as info:
        await ch.aio_run({"n": 1}, timeout=5)
    assert info.value.error is not None
    assert info.value.error.signature_key == bad.key
    assert info.value.error.message == "boom 2"


async def test_result_of_a_failed_swarm_counts_failures(board: Board) -> None:
    sw = await mageflow.aswarm()
    await sw.aio_run_tasks_in_swarm(["boom", "boom"], [Num(n=1), Num(n=2)])
    await sw.close_swarm()
    with pytest.raises(SignatureFailedError) as info:
        await sw.aio_run({}, timeout=5)
    assert info.value.error is not None
    assert info.value.error.type == "SwarmFailed"
    assert info.value.error.message == "2 of 2 members failed"


async def test_result_times_out_and_changes_nothing(board: Board, raw: Raw) -> None:
    board.gate.clear()
    sig = await mageflow.asign("double")
    await sig.aio_run_no_wait(Num(n=1))
    await eventually(lambda: _is_active(raw, sig.key), what="run started")
    before = await raw.hash(sig.key)
    with pytest.raises(ResultTimeoutError) as info:
        await mageflow.result(sig.key, timeout=0.2)
    assert info.value.key == sig.key and info.value.status == "active"
    assert isinstance(info.value, TimeoutError)
    assert await raw.hash(sig.key) == before
    board.gate.set()
    assert await mageflow.result(sig.key, timeout=5) == 2


async def _is_active(raw: Raw, key: str) -> bool:
    return await raw.status(key) == "active"


async def test_result_of_unknown_key_and_bad_timeout() -> None:
    with pytest.raises(SignatureNotFoundError):
        await mageflow.result("nope", timeout=1)
    sig = await mageflow.asign("double")
    with pytest.raises(MageflowValidationError) as info:
        await mageflow.result(sig.key, timeout=-1)
    assert info.value.field == "timeout"


async def test_waiters_are_woken_by_publish_not_by_polling(board: Board) -> None:
    board.gate.clear()
    sigs = [await mageflow.asign("double") for _ in range(50)]
    for i, sig in enumerate(sigs):
        await sig.aio_run_no_wait(Num(n=i))
    # a poll interval far beyond the test: only the published change can wake them
    waiters = [
        asyncio.create_task(mageflow.result(s.key, timeout=10, poll_interval=60)) for s in sigs
    ]
    await asyncio.sleep(0.1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    board.gate.set()
    results = await asyncio.gather(*waiters)
    assert results == [2 * i for i in range(50)]
    assert loop.time() - started < 5


async def test_many_waiters_share_one_pubsub_connection(
    board: Board, runtime: MageflowRuntime, redis_client: aioredis.Redis
) -> None:
    board.gate.clear()
    sig = await mageflow.asign("double")
    await sig.aio_run_no_wait(Num(n=5))
    waiters = [
        asyncio.create_task(mageflow.result(sig.key, timeout=10, poll_interval=60))
        for _ in range(1000)
    ]
    await asyncio.sleep(0.3)
    subscribers = [c for c in await redis_client.client_list() if int(c.get("sub", 0)) > 0]
    assert len(subscribers) == 1  # one shared pub/sub connection
    numsub = await redis_client.pubsub_numsub(runtime.store.keys.events(sig.key))
    assert numsub[0][1] == 1  # one subscription for 1 000 waiters
    board.gate.set()
    assert set(await asyncio.gather(*waiters)) == {10}


async def test_polling_fallback_finds_an_outcome_without_a_message(
    board: Board, runtime: MageflowRuntime, raw: Raw
) -> None:
    sig = await mageflow.asign("double")
    waiter = asyncio.create_task(mageflow.result(sig.key, timeout=5, poll_interval=0.1))
    await asyncio.sleep(0.05)
    # written behind the scripts' back: no message is published
    await raw.client.hset(raw.sig_key(sig.key), mapping={"s": "done", "res": "123"})
    assert await waiter == 123


# -- error details into error callbacks -----------------------------------------


async def test_error_callback_gets_details_in_its_error_info_field(board: Board) -> None:
    cb = await mageflow.asign("alert")
    sig = await mageflow.asign("boom", error_callbacks=[cb])
    await sig.aio_run_no_wait(Num(n=3))
    await eventually(lambda: _has(board, "alert"), what="alert ran")
    got = board.calls["alert"][0]
    assert got.n == 3
    assert got.error.message == "boom 3"
    assert got.error.signature_key == sig.key


async def test_error_callback_without_error_info_gets_the_original_message(board: Board) -> None:
    cb = await mageflow.asign("plain")
    sig = await mageflow.asign("boom", error_callbacks=[cb])
    await sig.aio_run_no_wait(Num(n=9))
    await eventually(lambda: _has(board, "plain"), what="plain ran")
    assert board.calls["plain"][0] == Plain(n=9)


async def _has(board: Board, name: str) -> bool:
    return bool(board.calls.get(name))


# -- cancel -----------------------------------------------------------------------


async def test_cancel_a_running_task_cancels_its_run(
    board: Board, manager: InMemoryTaskManager
) -> None:
    sig = await mageflow.asign("slow")
    await sig.aio_run_no_wait(Num(n=1))
    await eventually(lambda: _has(board, "slow"), what="slow started")
    await sig.cancel()
    assert sig.status == S.CANCELED
    with pytest.raises(SignatureCanceledError):
        await sig.aio_result(timeout=5)
    await manager.wait_idle(timeout=5)
    assert any(r.status == "cancelled" for r in manager.runs.values())


async def test_cancel_wakes_a_waiter(board: Board) -> None:
    sig = await mageflow.asign("slow")
    await sig.aio_run_no_wait(Num(n=1))
    waiter = asyncio.create_task(mageflow.result(sig.key, timeout=5, poll_interval=60))
    await asyncio.sleep(0.1)
    await mageflow.cancel(sig.key)
    with pytest.raises(SignatureCanceledError):
        await waiter


async def test_cancel_is_terminal_and_repeatable(board: Board) -> None:
    sig = await mageflow.asign("double")
    await mageflow.cancel(sig.key)
    status = await mageflow.cancel(sig.key)
    assert status.status == S.CANCELED
    with pytest.raises(InvalidTransitionError):
        await mageflow.resume(sig.key)
    with pytest.raises(InvalidTransitionError):
        await sig.aio_run_no_wait(Num(n=1))


async def test_cancel_refuses_finished_and_unknown(board: Board, raw: Raw) -> None:
    sig = await mageflow.asign("double")
    await sig.aio_run(Num(n=1), timeout=5)
    before = await raw.hash(sig.key)
    with pytest.raises(InvalidTransitionError):
        await mageflow.cancel(sig.key)
    assert await raw.hash(sig.key) == before
    with pytest.raises(SignatureNotFoundError):
        await mageflow.cancel("no-such-key")
    with pytest.raises(MageflowValidationError):
        await mageflow.cancel("")


async def test_cancel_cascades_over_a_swarm(board: Board, raw: Raw) -> None:
    board.gate.clear()
    sw = await mageflow.aswarm(config=mageflow.SwarmConfig(max_concurrency=1))
    members = await sw.aio_run_tasks_in_swarm(["double"] * 3, [Num(n=i) for i in range(3)])
    await sw.close_swarm()
    await sw.aio_run_no_wait({})
    await mageflow.cancel(sw.key)
    for key in [sw.key, *members]:
        assert await raw.status(key) == "canceled"
    board.gate.set()
    with pytest.raises(SignatureCanceledError):
        await sw.aio_result(timeout=2)


async def test_cancel_a_member_of_a_running_container_is_refused(board: Board, raw: Raw) -> None:
    board.gate.clear()
    first = await mageflow.asign("double")
    ch = await mageflow.achain([first, "twice"])
    await ch.aio_run_no_wait({"n": 1})
    with pytest.raises(InvalidTransitionError) as info:
        await mageflow.cancel(first.key)
    assert ch.key in str(info.value)
    assert await raw.status(first.key) in ("pending", "active")
    board.gate.set()
    assert await ch.aio_result(timeout=5) == 4


async def test_cancel_with_error_callbacks_fires_them_once(board: Board) -> None:
    cb = await mageflow.asign("alert")
    sig = await mageflow.asign("slow", error_callbacks=[cb])
    await sig.aio_run_no_wait(Num(n=5))
    await eventually(lambda: _has(board, "slow"), what="slow started")
    await sig.cancel(error_callbacks=True)
    await sig.cancel(error_callbacks=True)
    await eventually(lambda: _has(board, "alert"), what="alert ran")
    await asyncio.sleep(0.2)
    assert len(board.calls["alert"]) == 1
    got = board.calls["alert"][0]
    assert got.n == 5 and got.error.type == "Canceled"


async def test_cancel_without_error_callbacks_fires_none(board: Board) -> None:
    cb = await mageflow.asign("alert")
    sig = await mageflow.asign("slow", error_callbacks=[cb])
    await sig.aio_run_no_wait(Num(n=5))
    await sig.cancel()
    await asyncio.sleep(0.2)
    assert "alert" not in board.calls
    assert await mageflow.load_signature(cb.key) is not None


@pytest.mark.parametrize("delay", [0.0, 0.001, 0.003, 0.01, 0.1])
async def test_cancel_racing_completion_has_exactly_one_outcome(
    board: Board, manager: InMemoryTaskManager, delay: float
) -> None:
    ok = await mageflow.asign("got")
    bad = await mageflow.asign("alert")
    sig = await mageflow.asign("double", success_callbacks=[ok], error_callbacks=[bad])
    await sig.aio_run_no_wait(Num(n=1))
    await asyncio.sleep(delay)
    try:
        await mageflow.cancel(sig.key, error_callbacks=True)
        canceled = True
    except InvalidTransitionError:
        canceled = False
    await manager.wait_idle(timeout=5)
    if delay == 0.1:
        assert not canceled  # the run had finished: the cancel is refused
    loaded = await mageflow.load_signature(sig.key)
    assert loaded is not None
    if canceled:
        assert loaded.status == S.CANCELED
        with pytest.raises(SignatureCanceledError):
            await sig.aio_result(timeout=1)
    else:
        assert loaded.status == S.DONE
        assert await sig.aio_result(timeout=1) == 2
    # exactly one outcome's callbacks (the success callback never runs on cancel)
    assert ("got" in board.calls) != canceled
    assert ("alert" in board.calls) == canceled


# -- retry and clone ----------------------------------------------------------------


async def test_retry_a_failed_task_runs_it_again_with_its_input(board: Board) -> None:
    ok = await mageflow.asign("got")
    sig = await mageflow.asign("boom", success_callbacks=[ok])
    with pytest.raises(SignatureFailedError):
        await sig.aio_run(Num(n=4), timeout=5)
    board.fail_until = 2  # the second attempt succeeds
    await sig.retry()
    assert sig.error is None
    assert await sig.aio_result(timeout=5) == 4
    assert board.calls["boom"] == [4, 4]
    await eventually(lambda: _has(board, "got"), what="success callback")
    assert board.calls["got"] == [4]
    loaded = await mageflow.load_signature(sig.key)
    assert loaded is not None and loaded.error is None


async def test_retry_failing_again_does_not_rerun_error_callbacks(board: Board) -> None:
    """A callback runs once: the alert of the first failure is not sent twice."""
    cb = await mageflow.asign("alert")
    sig = await mageflow.asign("boom", error_callbacks=[cb])
    with pytest.raises(SignatureFailedError):
        await sig.aio_run(Num(n=1), timeout=5)
    await eventually(lambda: _has(board, "alert"), what="first alert")
    await mageflow.retry(sig.key)
    with pytest.raises(SignatureFailedError) as info:
        await sig.aio_result(timeout=5)
    assert info.value.error is not None and info.value.error.message == "boom 1"
    assert board.calls["boom"] == [1, 1]
    await asyncio.sleep(0.1)
    assert len(board.calls["alert"]) == 1


async def test_retry_fires_error_callbacks_that_had_not_run(board: Board) -> None:
    """Canceled without callbacks, retried, failed: now the error callback runs, once."""
    board.gate.clear()
    cb = await mageflow.asign("alert")
    sig = await mageflow.asign("boom", error_callbacks=[cb])
    await sig.aio_run_no_wait(Num(n=2))
    await sig.cancel()
    board.gate.set()
    await mageflow.retry(sig.key)
    with pytest.raises(SignatureFailedError):
        await sig.aio_result(timeout=5)
    await eventually(lambda: _has(board, "alert"), what="alert")
    await asyncio.sleep(0.1)
    assert len(board.calls["alert"]) == 1


async def _count(board: Board, name: str, n: int) -> bool:
    return len(board.calls.get(name, [])) >= n


async def test_retry_a_canceled_task(board: Board) -> None:
    sig = await mageflow.asign("slow")
    await sig.aio_run_no_wait(Num(n=2))
    await eventually(lambda: _has(board, "slow"), what="slow started")
    await sig.cancel()
    await mageflow.retry(sig.key)
    assert (await mageflow.load_signature(sig.key)).status in (S.PENDING, S.ACTIVE)  # type: ignore[union-attr]
    await eventually(lambda: _count(board, "slow", 2), what="slow again")
    await mageflow.cancel(sig.key)


async def test_retry_is_refused_for_running_done_containers_and_never_run(
    board: Board, raw: Raw
) -> None:
    done = await mageflow.asign("double")
    await done.aio_run(Num(n=1), timeout=5)
    with pytest.raises(InvalidTransitionError):
        await mageflow.retry(done.key)
    never = await mageflow.asign("double")
    await never.cancel()
    before = await raw.hash(never.key)
    with pytest.raises(InvalidTransitionError) as info:
        await mageflow.retry(never.key)
    assert "never received an input" in str(info.value)
    assert await raw.hash(never.key) == before
    ch = await mageflow.achain(["boom_step", "twice"])
    with pytest.raises(SignatureFailedError):
        await ch.aio_run({"n": 1}, timeout=5)
    with pytest.raises(InvalidTransitionError) as info:
        await mageflow.retry(ch.key)
    assert "clone" in str(info.value)
    with pytest.raises(SignatureNotFoundError):
        await mageflow.retry("missing-key")


async def test_clone_copies_task_kwargs_and_callbacks(board: Board) -> None:
    cb = await mageflow.asign("plain", n=1)
    sig = await mageflow.asign("double", n=5, success_callbacks=[cb], task_identifiers={"o": 1})
    copy = await sig.clone()
    assert copy.key != sig.key and copy.task_name == "double"
    assert copy.kwargs == {"n": 5} and copy.task_identifiers == {"o": 1}
    assert len(copy.success_callbacks) == 1 and copy.success_callbacks[0] != cb.key
    assert copy.status == S.PENDING
    assert await copy.aio_run({}, timeout=5) == 10
    changed = await sig.clone(kwargs={"n": 6})
    assert await changed.aio_run({}, timeout=5) == 12
    with pytest.raises(MageflowValidationError):
        await sig.clone(task_name="other")


async def test_clone_of_a_chain_and_a_swarm(board: Board) -> None:
    ch = await mageflow.achain(["twice", "twice"])
    copy = await ch.clone()
    assert isinstance(copy, mageflow.ChainSignature)
    assert copy.tasks != ch.tasks and len(copy.tasks) == 2
    assert await copy.aio_run({"n": 1}, timeout=5) == 4
    sw = await mageflow.aswarm(tasks=["double"], is_swarm_closed=True, n=3)
    swc = await sw.clone()
    assert await swc.aio_run({}, timeout=5) == [6]


# -- progress -------------------------------------------------------------------------


async def test_swarm_progress_moves_as_members_finish(board: Board) -> None:
    board.gate.clear()
    sw = await mageflow.aswarm(config=mageflow.SwarmConfig(max_concurrency=2))
    await sw.aio_run_tasks_in_swarm(["double"] * 5, [Num(n=i) for i in range(5)])
    await sw.close_swarm()
    await sw.aio_run_no_wait({})
    p = await sw.progress()
    assert (p.admitted, p.running, p.queued, p.done, p.failed) == (5, 2, 3, 0, 0)
    assert p.kind == "swarm" and p.status == "active" and p.current_step is None
    board.gate.set()
    await sw.aio_result(timeout=5)
    p = await sw.progress()
    assert (p.admitted, p.running, p.queued, p.done, p.status) == (5, 0, 0, 5, "done")


async def test_chain_progress_has_the_current_step(board: Board) -> None:
    board.gate.clear()
    ch = await mageflow.achain(["twice", "twice", "twice"])
    p = await ch.progress()
    assert (p.admitted, p.queued, p.current_step) == (3, 3, None)
    await ch.aio_run_no_wait({"n": 1})
    await asyncio.sleep(0.05)
    p = await ch.progress()
    assert p.current_step == 0 and p.running == 1 and p.queued == 2
    board.gate.set()
    await ch.aio_result(timeout=5)
    p = await mageflow.progress(ch.key)
    assert (p.done, p.current_step, p.status) == (3, 2, "done")
    with pytest.raises(SignatureNotFoundError):
        await mageflow.progress("missing")


async def test_many_cancels_racing_completions_each_have_one_outcome(
    board: Board, manager: InMemoryTaskManager
) -> None:
    import random

    rng = random.Random(7)
    sigs = []
    for _ in range(40):
        ok = await mageflow.asign("got")
        bad = await mageflow.asign("alert")
        sigs.append(await mageflow.asign("double", success_callbacks=[ok], error_callbacks=[bad]))

    async def race(i: int, sig: TaskSignature) -> bool:
        await sig.aio_run_no_wait(Num(n=i))
        await asyncio.sleep(rng.choice([0, 0.001, 0.002, 0.005, 0.01]))
        try:
            await mageflow.cancel(sig.key, error_callbacks=True)
        except InvalidTransitionError:
            return False
        return True

    canceled = await asyncio.gather(*(race(i, s) for i, s in enumerate(sigs, 1)))
    await manager.wait_idle(timeout=10)
    await asyncio.sleep(0.1)
    await manager.wait_idle(timeout=10)
    got = Counter(v // 2 for v in board.calls.get("got", []))
    alerted = Counter(a.n for a in board.calls.get("alert", []))
    for i, (sig, was_canceled) in enumerate(zip(sigs, canceled, strict=True), 1):
        loaded = await mageflow.load_signature(sig.key)
        assert loaded is not None
        assert loaded.status == (S.CANCELED if was_canceled else S.DONE), i
        assert (got[i], alerted[i]) == ((0, 1) if was_canceled else (1, 0)), i
