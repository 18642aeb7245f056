"""Chains on the in-memory engine: result flow, kwargs, callbacks, failure, retries."""

from __future__ import annotations

from typing import Any

import mageflow
import pytest
from mageflow import MageflowValidationError, SignatureStatus
from mageflow.inmemory import InMemoryTaskManager, NonRetryableError

from tests.integration._helpers import Raw
from tests.integration.container_models import Loose, Num, Prev, Results

pytestmark = pytest.mark.usefixtures("runtime")


class Seen:
    """What each task body received, in call order."""

    def __init__(self) -> None:
        self.calls: dict[str, list[Any]] = {}

    def add(self, name: str, value: Any) -> None:
        self.calls.setdefault(name, []).append(value)

    def of(self, name: str) -> list[Any]:
        return self.calls.get(name, [])


@pytest.fixture
def seen(manager: InMemoryTaskManager) -> Seen:
    rec = Seen()

    @manager.task("start")
    async def start(msg: Num) -> int:
        rec.add("start", msg)
        if msg.fail:
            raise NonRetryableError("start failed")
        return msg.x + msg.add

    @manager.task("step")
    async def step(msg: Prev) -> int:
        rec.add("step", msg)
        if msg.fail:
            raise NonRetryableError("step failed")
        return int(msg.prev) + msg.add

    @manager.task("results")
    async def results(msg: Results) -> Any:
        rec.add("results", msg)
        return msg.mageflow_results

    @manager.task("collect")
    async def collect(msg: Results) -> None:
        rec.add("collect", msg)

    @manager.task("on_error")
    async def on_error(msg: Loose) -> None:
        rec.add("on_error", msg.model_dump())

    return rec


async def test_each_step_receives_the_previous_result(
    manager: InMemoryTaskManager, seen: Seen, raw: Raw
) -> None:
    ok = await mageflow.asign("collect", tag="chain-ok")
    ch = await mageflow.achain(["start", "step", "step"], success=[ok])
    await ch.aio_run_no_wait(Num(x=1))
    await manager.wait_idle()

    assert [m.x for m in seen.of("start")] == [1]
    assert [m.prev for m in seen.of("step")] == [2, 3]
    (got,) = seen.of("collect")
    assert got.mageflow_results == 4
    assert got.tag == "chain-ok"
    sig = await mageflow.load_signature(ch.key)
    assert sig is not None and sig.status is SignatureStatus.DONE
    assert [await raw.status(k) for k in ch.tasks] == ["done"] * 3


async def test_default_results_field_receives_the_previous_result(
    manager: InMemoryTaskManager, seen: Seen
) -> None:
    ok = await mageflow.asign("collect")
    ch = await mageflow.achain(["start", "results", "results"], success=[ok])
    await ch.aio_run_no_wait(Num(x=10, add=5))
    await manager.wait_idle()

    assert [m.mageflow_results for m in seen.of("results")] == [15, 15]
    assert [m.mageflow_results for m in seen.of("collect")] == [15]


async def test_chain_kwargs_reach_every_step_and_own_kwargs_win(
    manager: InMemoryTaskManager, seen: Seen
) -> None:
    own = await mageflow.asign("step", add=100, tag="own")
    ok = await mageflow.asign("collect")
    ch = await mageflow.achain(["start", "step", own], success=[ok], add=5, tag="chain")
    await ch.aio_run_no_wait(Num(x=1))
    await manager.wait_idle()

    (first,) = seen.of("start")
    assert (first.add, first.tag) == (5, "chain")  # chain kwargs win over the message
    second, third = seen.of("step")
    assert (second.prev, second.add, second.tag) == (6, 5, "chain")
    assert (third.prev, third.add, third.tag) == (11, 100, "own")
    assert [m.mageflow_results for m in seen.of("collect")] == [111]


async def test_message_reaches_only_the_first_step(
    manager: InMemoryTaskManager, seen: Seen
) -> None:
    ch = await mageflow.achain(["start", "step"])
    await ch.aio_run_no_wait({"x": 3, "add": 4, "tag": "msg"})
    await manager.wait_idle()

    assert [(m.x, m.add, m.tag) for m in seen.of("start")] == [(3, 4, "msg")]
    assert [(m.prev, m.add, m.tag) for m in seen.of("step")] == [(7, 1, "")]


async def test_members_may_be_signatures_keys_names_or_task_objects(
    manager: InMemoryTaskManager, seen: Seen
) -> None:
    first = await mageflow.asign("start")
    third = await mageflow.asign("step", add=10)
    task_obj = manager._tasks["step"]
    ok = await mageflow.asign("collect")
    ch = await mageflow.achain([first, task_obj, third.key, "step"], success=[ok])
    assert ch.tasks[0] == first.key and ch.tasks[2] == third.key
    await ch.aio_run_no_wait(Num(x=0))
    await manager.wait_idle()

    assert [m.prev for m in seen.of("step")] == [1, 2, 12]
    assert [m.mageflow_results for m in seen.of("collect")] == [13]


async def test_a_failing_step_fails_the_chain_and_later_steps_never_run(
    manager: InMemoryTaskManager, seen: Seen, raw: Raw
) -> None:
    ok = await mageflow.asign("collect")
    err = await mageflow.asign("on_error", tag="chain-err")
    failing = await mageflow.asign("step", fail=True)
    ch = await mageflow.achain(["start", failing, "step"], success=[ok], error=[err], add=2)
    await ch.aio_run_no_wait(Num(x=1))
    await manager.wait_idle()

    assert len(seen.of("step")) == 1  # the failing step only
    assert seen.of("collect") == []
    (got,) = seen.of("on_error")
    # the failing step's input: injected result, chain kwargs, its own kwargs
    assert got["prev"] == 3 and got["add"] == 2 and got["fail"] is True
    assert got["tag"] == "chain-err"  # the callback's own kwargs win
    sig = await mageflow.load_signature(ch.key)
    assert sig is not None and sig.status is SignatureStatus.FAILED
    assert await raw.status(ch.tasks[1]) == "failed"
    # a step the chain never reached will never run: skipped, not pending forever
    assert await raw.status(ch.tasks[2]) == "skipped"
    progress = await mageflow.progress(ch.key)
    assert (progress.queued, progress.done, progress.failed, progress.skipped) == (0, 1, 1, 1)
    assert await raw.status(ok.key) == "skipped"  # the branch not taken (issue 11.8)


async def test_a_failing_first_step_passes_the_original_message_to_error_callbacks(
    manager: InMemoryTaskManager, seen: Seen
) -> None:
    err = await mageflow.asign("on_error")
    ch = await mageflow.achain(["start", "step"], error=[err])
    await ch.aio_run_no_wait(Num(x=9, fail=True, tag="orig"))
    await manager.wait_idle()

    (got,) = seen.of("on_error")
    assert (got["x"], got["fail"], got["tag"]) == (9, True, "orig")
    assert seen.of("step") == []


async def test_a_step_retried_to_success_continues_the_chain(
    manager: InMemoryTaskManager, seen: Seen
) -> None:
    attempts: list[int] = []

    @manager.task("flaky", retries=2)
    async def flaky(msg: Prev) -> int:
        attempts.append(int(msg.prev))
        if len(attempts) < 3:
            raise RuntimeError("transient")
        return int(msg.prev) * 10

    ok = await mageflow.asign("collect")
    err = await mageflow.asign("on_error")
    ch = await mageflow.achain(["start", "flaky", "step"], success=[ok], error=[err])
    await ch.aio_run_no_wait(Num(x=1))
    await manager.wait_idle()

    assert attempts == [2, 2, 2]
    assert [m.prev for m in seen.of("step")] == [20]
    assert [m.mageflow_results for m in seen.of("collect")] == [21]
    assert seen.of("on_error") == []


async def test_a_step_failing_all_its_retries_fails_the_chain_once(
    manager: InMemoryTaskManager, seen: Seen
) -> None:
    @manager.task("broken", retries=2)
    async def broken(msg: Prev) -> int:
        raise RuntimeError("always")

    err = await mageflow.asign("on_error")
    ch = await mageflow.achain(["start", "broken", "step"], error=[err])
    await ch.aio_run_no_wait(Num(x=1))
    await manager.wait_idle()

    assert manager.body_calls["broken"] == 3
    assert seen.of("step") == []
    assert len(seen.of("on_error")) == 1
    assert (await mageflow.load_signature(ch.key)).status is SignatureStatus.FAILED  # type: ignore[union-attr]


async def test_a_steps_own_callbacks_fire_besides_the_chain(
    manager: InMemoryTaskManager, seen: Seen
) -> None:
    step_cb = await mageflow.asign("collect", tag="step-cb")
    first = await mageflow.asign("start", success_callbacks=[step_cb])
    chain_cb = await mageflow.asign("collect", tag="chain-cb")
    ch = await mageflow.achain([first, "step"], success=[chain_cb])
    await ch.aio_run_no_wait(Num(x=1))
    await manager.wait_idle()

    got = sorted((m.tag, m.mageflow_results) for m in seen.of("collect"))
    assert got == [("chain-cb", 3), ("step-cb", 2)]


async def test_chain_runs_each_step_exactly_once(manager: InMemoryTaskManager, seen: Seen) -> None:
    ok = await mageflow.asign("collect")
    ch = await mageflow.achain(["start", *(["step"] * 8)], success=[ok])
    await ch.aio_run_no_wait(Num(x=0))
    await manager.wait_idle()

    assert [m.prev for m in seen.of("step")] == list(range(1, 9))
    assert manager.body_calls["start"] == 1 and manager.body_calls["step"] == 8
    assert [m.mageflow_results for m in seen.of("collect")] == [9]


async def test_chain_needs_two_or_more_tasks(seen: Seen) -> None:
    with pytest.raises(MageflowValidationError, match="two or more"):
        await mageflow.achain(["start"])
    with pytest.raises(MageflowValidationError):
        await mageflow.achain("start")


async def test_a_signature_belongs_to_one_chain_only(seen: Seen) -> None:
    shared = await mageflow.asign("step")
    await mageflow.achain(["start", shared])
    with pytest.raises(MageflowValidationError, match="already belongs"):
        await mageflow.achain(["start", shared])


async def test_chain_alias_and_name(manager: InMemoryTaskManager, seen: Seen) -> None:
    ch = await mageflow.chain(["start", "step"], name="my-chain")
    assert ch.task_name == "my-chain"
    loaded = await mageflow.load_signature(ch.key)
    assert isinstance(loaded, mageflow.ChainSignature)
    assert loaded.tasks == ch.tasks and loaded.task_name == "my-chain"
    await ch.aio_run_no_wait(Num(x=1))
    await manager.wait_idle()
    assert (await mageflow.load_signature(ch.key)).status is SignatureStatus.DONE  # type: ignore[union-attr]


async def test_a_chain_runs_once_even_if_started_twice(
    manager: InMemoryTaskManager, seen: Seen
) -> None:
    ok = await mageflow.asign("collect")
    ch = await mageflow.achain(["start", "step"], success=[ok])
    await ch.aio_run_no_wait(Num(x=1))
    await ch.aio_run_no_wait(Num(x=50))
    await manager.wait_idle()

    assert [m.x for m in seen.of("start")] == [1]
    assert [m.mageflow_results for m in seen.of("collect")] == [3]
