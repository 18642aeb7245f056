"""Bad input gets a clear error naming the key or field, and stored state is unchanged."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import mageflow
import pytest
from mageflow import (
    InvalidTransitionError,
    MageflowError,
    MageflowRuntime,
    MageflowValidationError,
    SignatureNotFoundError,
    StoreError,
    TaskSignature,
)
from mageflow.inmemory import InMemoryTaskManager

from tests.integration._helpers import Raw
from tests.integration.models import OrderMsg, TwoReturnValues

pytestmark = pytest.mark.usefixtures("runtime")


def _ops(key: str) -> dict[str, Callable[[], Awaitable[Any]]]:
    sig = TaskSignature(key=key, task_name="t")
    return {
        "load": lambda: mageflow.load_signature(key),
        "suspend": lambda: mageflow.pause(key),
        "interrupt": lambda: mageflow.pause(key, mageflow.PauseActionTypes.INTERRUPT),
        "resume": lambda: mageflow.resume(key),
        "remove": lambda: mageflow.remove(key),
        "delete": lambda: TaskSignature.delete_signature(key),
        "aupdate": lambda: sig.kwargs.aupdate(a=1),
        "add_callbacks": lambda: sig.add_callbacks(success=[key]),
        "run": lambda: sig.aio_run_no_wait({}),
        "lock": lambda: _lock(key),
    }


async def _lock(key: str) -> None:
    async with mageflow.lock_task(key):
        pass


OPS = list(_ops("x"))


# -- invalid transitions and missing keys ---------------------------------------------------


async def test_resume_of_a_done_task(manager: InMemoryTaskManager, raw: Raw) -> None:
    @manager.task("t")
    async def t(msg: dict[str, Any]) -> int:
        return 1

    sig = await mageflow.asign("t")
    await sig.aio_run_no_wait({})
    await manager.wait_idle()
    before = await raw.snapshot()
    with pytest.raises(InvalidTransitionError) as info:
        await mageflow.resume(sig.key)
    assert (
        str(info.value)
        == f"signature {sig.key!r}: cannot resume a signature whose status is 'done'"
    )
    with pytest.raises(InvalidTransitionError, match=sig.key):
        await sig.suspend()
    assert await raw.snapshot() == before


@pytest.mark.parametrize(
    "op", ["suspend", "interrupt", "resume", "aupdate", "add_callbacks", "run", "lock"]
)
async def test_operations_on_a_missing_key(op: str, raw: Raw) -> None:
    with pytest.raises(SignatureNotFoundError) as info:
        await _ops("task-missing")[op]()
    assert info.value.key == "task-missing"
    assert "'task-missing'" in str(info.value)
    assert await raw.snapshot() == {}


async def test_load_of_a_missing_key_is_none_remove_raises_like_pause(raw: Raw) -> None:
    assert await mageflow.load_signature("task-missing") is None
    for call in (
        lambda: mageflow.remove("task-missing"),
        lambda: TaskSignature.delete_signature("task-missing"),
        lambda: mageflow.pause("task-missing"),
        lambda: mageflow.resume("task-missing"),
    ):
        with pytest.raises(SignatureNotFoundError) as info:
            await call()
        assert info.value.key == "task-missing"
    assert await raw.snapshot() == {}


# -- foreign and corrupted data ----------------------------------------------------------------

FOREIGN: dict[str, Callable[[Any, str], Awaitable[Any]]] = {
    "string": lambda c, k: c.set(k, "hello"),
    "list": lambda c, k: c.rpush(k, "a", "b"),
    "hash-without-version": lambda c, k: c.hset(k, mapping={"s": "pending", "t": "x"}),
    "hash-other-version": lambda c, k: c.hset(k, mapping={"_v": "9", "s": "pending", "t": "x"}),
}


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("kind", list(FOREIGN))
async def test_foreign_data_under_a_signature_key(kind: str, op: str, raw: Raw) -> None:
    key = "task-foreign"
    await FOREIGN[kind](raw.client, raw.sig_key(key))
    before = await raw.snapshot()
    with pytest.raises(StoreError) as info:
        await _ops(key)[op]()
    assert key in str(info.value)
    assert "not a MageFlow signature" in str(info.value)
    assert await raw.snapshot() == before


@pytest.mark.parametrize("kind", list(FOREIGN))
async def test_foreign_data_as_a_callback(kind: str, raw: Raw) -> None:
    await FOREIGN[kind](raw.client, raw.sig_key("task-foreign"))
    sig = await mageflow.asign("t")
    before = await raw.snapshot()
    with pytest.raises(StoreError, match="task-foreign"):
        await mageflow.asign("t", success_callbacks=["task-foreign"])
    with pytest.raises(StoreError, match="task-foreign"):
        await sig.add_callbacks(errors=["task-foreign"])
    assert await raw.snapshot() == before


async def test_asign_over_foreign_data_refuses(raw: Raw) -> None:
    await raw.client.set(raw.sig_key("task-foreign"), "hello")
    before = await raw.snapshot()
    with pytest.raises(MageflowError, match="task-foreign"):
        await mageflow.asign("t", key="task-foreign")
    assert await raw.snapshot() == before


CORRUPT: dict[str, dict[str, str]] = {
    "no-task-name": {"t": ""},
    "bad-kwarg-json": {"k:a": "{not json"},
    "bad-callbacks-json": {"sc": "[oops"},
    "bad-creation-time": {"ct": "yesterday"},
    "bad-identifiers": {"ti": "[1, 2"},
}


@pytest.mark.parametrize("corruption", list(CORRUPT))
async def test_corrupted_hash_cannot_be_loaded(corruption: str, raw: Raw) -> None:
    sig = await mageflow.asign("t", a=1)
    fields = CORRUPT[corruption]
    if fields.get("t") == "":
        await raw.client.hdel(raw.sig_key(sig.key), "t")
    else:
        await raw.client.hset(raw.sig_key(sig.key), mapping=fields)
    before = await raw.snapshot()
    with pytest.raises(StoreError) as info:
        await mageflow.load_signature(sig.key)
    assert sig.key in str(info.value)
    assert info.value.key == sig.key
    assert await raw.snapshot() == before


@pytest.mark.parametrize("op", ["suspend", "resume", "interrupt", "run"])
async def test_hash_without_status(op: str, raw: Raw) -> None:
    sig = await mageflow.asign("t")
    await raw.client.hdel(raw.sig_key(sig.key), "s")
    before = await raw.snapshot()
    with pytest.raises(MageflowError) as info:
        await _ops(sig.key)[op]()
    assert sig.key in str(info.value)
    assert await raw.snapshot() == before


@pytest.mark.parametrize("field", ["sc", "ec"])
async def test_corrupted_callback_list_add_callbacks_changes_nothing(field: str, raw: Raw) -> None:
    sig = await mageflow.asign("t")
    a = await mageflow.asign("a")
    b = await mageflow.asign("b")
    await raw.client.hset(raw.sig_key(sig.key), field, "[oops")
    before = await raw.snapshot()
    with pytest.raises(StoreError) as info:
        await sig.add_callbacks(success=[a], errors=[b])
    assert sig.key in str(info.value)
    assert await raw.snapshot() == before


@pytest.mark.parametrize("field", ["sc", "ec"])
async def test_corrupted_callback_list_remove_changes_nothing(field: str, raw: Raw) -> None:
    a = await mageflow.asign("a")
    sig = await mageflow.asign("t", success_callbacks=[a], error_callbacks=[a])
    await raw.client.hset(raw.sig_key(sig.key), field, "[oops")
    before = await raw.snapshot()
    with pytest.raises(StoreError, match=sig.key):
        await mageflow.remove(sig.key)
    assert await raw.snapshot() == before


# -- non-JSON values -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [object(), float("nan"), {1, object()}, b"\xff\xfe"])
async def test_non_json_kwargs_on_asign(value: Any, raw: Raw) -> None:
    with pytest.raises(MageflowValidationError) as info:
        await mageflow.asign("t", good=1, bad=value)
    assert "kwargs.bad" in str(info.value)
    assert info.value.field == "kwargs.bad"
    with pytest.raises(MageflowValidationError, match=r"kwargs\.bad"):
        await mageflow.asign("t", kwargs={"bad": value})
    assert await raw.snapshot() == {}


async def test_non_json_kwargs_on_aupdate(raw: Raw) -> None:
    sig = await mageflow.asign("t", a=1)
    before = await raw.snapshot()
    with pytest.raises(MageflowValidationError) as info:
        await sig.kwargs.aupdate(ok=2, bad=object())
    assert info.value.field == "kwargs.bad"
    assert "kwargs.bad" in str(info.value)
    assert sig.kwargs == {"a": 1}
    assert await raw.snapshot() == before


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"key": "has space"}, "key"),
        ({"task_identifiers": {"x": object()}}, "task_identifiers.x"),
        ({"task_identifiers": "nope"}, "task_identifiers"),
        ({"success_callbacks": [3]}, "success_callbacks"),
        ({"model_validators": 3}, "model_validators"),
        ({"task_status": "bogus"}, "task_status"),
    ],
)
async def test_bad_options_on_asign_name_the_field(
    options: dict[str, Any], field: str, raw: Raw
) -> None:
    with pytest.raises(MageflowValidationError) as info:
        await mageflow.asign("t", **options)
    assert field in str(info.value)
    assert info.value.field == field
    assert await raw.snapshot() == {}


async def test_function_local_model_validators_rejected_on_asign(raw: Raw) -> None:
    from pydantic import BaseModel

    class Local(BaseModel):
        x: int

    with pytest.raises(MageflowValidationError, match="model_validators"):
        await mageflow.asign("t", model_validators=Local)
    assert await raw.snapshot() == {}


async def test_duplicate_key_refused(raw: Raw) -> None:
    await mageflow.asign("t", key="task-dup", a=1)
    before = await raw.snapshot()
    with pytest.raises(MageflowValidationError, match="task-dup"):
        await mageflow.asign("other", key="task-dup", a=2)
    assert await raw.snapshot() == before


async def test_missing_callback_on_asign(raw: Raw) -> None:
    with pytest.raises(SignatureNotFoundError, match="task-nope") as info:
        await mageflow.asign("t", error_callbacks=["task-nope"])
    assert info.value.key == "task-nope"
    assert await raw.snapshot() == {}


# -- ReturnValue misuse ----------------------------------------------------------------------------


async def test_callback_model_with_two_return_values_on_asign(
    manager: InMemoryTaskManager, raw: Raw
) -> None:
    @manager.task("bad-cb", input_validator=TwoReturnValues)
    async def bad_cb(msg: TwoReturnValues) -> None:
        return None

    with pytest.raises(MageflowValidationError) as info:
        await mageflow.asign(bad_cb)
    assert "'first'" in str(info.value)
    assert "'second'" in str(info.value)
    with pytest.raises(MageflowValidationError, match=r"'first'.*'second'"):
        await mageflow.asign("anything", model_validators=TwoReturnValues)
    assert await raw.snapshot() == {}


async def test_two_return_values_found_at_completion_blocks_nothing_else(
    manager: InMemoryTaskManager, raw: Raw
) -> None:
    """A callback whose model is only known to the worker (path string) still fails clearly."""
    seen: list[Any] = []

    @manager.task("p")
    async def p(msg: dict[str, Any]) -> int:
        return 1

    @manager.task("good")
    async def good(msg: dict[str, Any]) -> None:
        seen.append(msg)

    bad = await mageflow.asign("bad", model_validators="tests.integration.models:TwoReturnValues")
    ok = await mageflow.asign("good")
    sig = await mageflow.asign(p, success_callbacks=[bad, ok])
    await sig.aio_run_no_wait({})
    await manager.wait_idle()
    (parent_run,) = [r for r in manager.runs.values() if r.task_name == "p"]
    assert parent_run.error is not None
    assert "'first'" in parent_run.error
    assert "'second'" in parent_run.error
    # The sibling callback was dispatched anyway; the bad one was not.
    assert seen == [{"mageflow_results": 1}]
    assert await raw.status(sig.key) == "done"
    assert await raw.status(bad.key) == "pending"


# -- messages that do not fit ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("msg", "field"),
    [
        ({}, "order_id"),
        ({"order_id": "abc"}, "order_id"),
        ({"order_id": 1, "priority": 5}, "priority"),
    ],
)
async def test_message_that_does_not_fit_is_not_dispatched(
    msg: dict[str, Any], field: str, manager: InMemoryTaskManager, raw: Raw
) -> None:
    @manager.task("p", input_validator=OrderMsg)
    async def p(m: OrderMsg) -> None:
        pytest.fail("must not run")

    sig = await mageflow.asign(p)
    before = await raw.snapshot()
    with pytest.raises(MageflowValidationError) as info:
        await sig.aio_run_no_wait(msg)
    err = info.value
    assert err.field == field
    assert err.key == sig.key
    assert f"'{field}'" in str(err)
    assert sig.key in str(err)
    assert "OrderMsg" in str(err)
    assert manager.runs == {}
    assert await raw.snapshot() == before


async def test_bound_kwargs_that_do_not_fit_are_refused_at_run(
    manager: InMemoryTaskManager, raw: Raw
) -> None:
    @manager.task("p", input_validator=OrderMsg)
    async def p(m: OrderMsg) -> None:
        pytest.fail("must not run")

    sig = await mageflow.asign(p, order_id="not-a-number")
    before = await raw.snapshot()
    with pytest.raises(MageflowValidationError, match="'order_id'"):
        await sig.aio_run_no_wait({"order_id": 1})  # bound kwargs win over the message
    assert manager.runs == {}
    assert await raw.snapshot() == before


async def test_non_json_message_is_refused(manager: InMemoryTaskManager, raw: Raw) -> None:
    @manager.task("p")
    async def p(m: dict[str, Any]) -> None:
        pytest.fail("must not run")

    sig = await mageflow.asign(p)
    before = await raw.snapshot()
    with pytest.raises(MageflowValidationError, match=r"msg\.blob") as info:
        await sig.aio_run_no_wait({"blob": object()})
    assert info.value.field == "msg.blob"
    with pytest.raises(MageflowValidationError, match="msg"):
        await sig.aio_run_no_wait([1, 2])  # type: ignore[arg-type]
    assert manager.runs == {}
    assert await raw.snapshot() == before


async def test_non_json_return_value_fails_the_run_clearly(
    manager: InMemoryTaskManager, raw: Raw
) -> None:
    @manager.task("p")
    async def p(m: dict[str, Any]) -> Any:
        return object()

    sig = await mageflow.asign(p)
    await sig.aio_run_no_wait({})
    await manager.wait_idle()
    (record,) = manager.runs.values()
    assert record.error is not None
    assert "return value of p" in record.error
    stored = await raw.hash(sig.key)
    assert stored["s"] == "failed"


async def test_unregistered_task_is_refused_without_a_trace(
    runtime: MageflowRuntime, raw: Raw
) -> None:
    sig = await mageflow.asign("nobody-registered-this")
    with pytest.raises(MageflowError, match="nobody-registered-this"):
        await sig.aio_run_no_wait({})
    stored = await raw.hash(sig.key)
    assert stored["s"] == "pending"
    assert json.loads(stored["m"]) == {}


async def test_input_that_stops_fitting_after_dispatch_fails_the_run(
    manager: InMemoryTaskManager, raw: Raw, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Any] = []

    @manager.task("p", input_validator=OrderMsg, retries=1)
    async def p(m: OrderMsg) -> None:
        pytest.fail("must not run")

    @manager.task("on-error")
    async def on_error(m: dict[str, Any]) -> None:
        seen.append(m)

    opened = asyncio.Event()
    original = manager._execute

    async def held(*args: Any) -> None:
        await opened.wait()
        await original(*args)

    monkeypatch.setattr(manager, "_execute", held)
    err = await mageflow.asign("on-error", note="n")
    sig = await mageflow.asign(p, error_callbacks=[err])
    await sig.aio_run_no_wait({"order_id": 1})
    await sig.kwargs.aupdate(order_id="not-a-number")  # applied when the run starts
    opened.set()
    await manager.wait_idle()
    (record,) = [r for r in manager.runs.values() if r.task_name == "p"]
    assert record.error is not None
    assert "'order_id'" in record.error
    stored = await raw.hash(sig.key)
    assert stored["s"] == "failed"
    assert "order_id" in stored["err"]
    # The error callback gets the message the run was dispatched with, plus its own kwargs.
    assert seen == [{"order_id": 1, "priority": "low", "note": "n"}]


@pytest.mark.parametrize("value", [[1, 2], "abc", 5])
async def test_kwargs_option_that_is_not_a_mapping(value: Any, raw: Raw) -> None:
    with pytest.raises(MageflowValidationError, match="kwargs") as info:
        await mageflow.asign("t", kwargs=value)
    assert info.value.field == "kwargs"
    assert await raw.snapshot() == {}


async def test_kwargs_option_from_a_model() -> None:
    sig = await mageflow.asign("t", kwargs=OrderMsg(order_id=3), extra=1)
    assert sig.kwargs == {"order_id": 3, "priority": "low", "extra": 1}


# -- issue 11.4: initial status and creation time -------------------------------


@pytest.mark.parametrize("status", ["done", "failed", "canceled"])
async def test_terminal_initial_status_is_refused_naming_the_field(raw: Raw, status: str) -> None:
    from mageflow import SignatureStatus, TaskStatus

    a = await mageflow.asign("a")
    b = await mageflow.asign("b")
    before = await raw.snapshot()
    for value in (status, SignatureStatus(status), TaskStatus(status=SignatureStatus(status))):
        with pytest.raises(MageflowValidationError) as info:
            await mageflow.asign("t", task_status=value)
        assert info.value.field == "task_status"
        with pytest.raises(MageflowValidationError) as chained:
            await mageflow.achain([a, b], task_status=value)
        assert chained.value.field == "task_status"
        with pytest.raises(MageflowValidationError) as swarmed:
            await mageflow.aswarm(task_status=value)
        assert swarmed.value.field == "task_status"
    assert await raw.snapshot() == before


async def test_naive_creation_time_is_local_time() -> None:
    from datetime import UTC, datetime

    naive = datetime.now()
    sig = await mageflow.asign("t", creation_time=naive)
    loaded = await mageflow.load_signature(sig.key)
    assert loaded is not None
    assert loaded.creation_time == naive.astimezone(UTC)
    assert loaded.creation_time.tzinfo == UTC
