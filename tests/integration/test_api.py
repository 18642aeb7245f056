"""Every public API call against a real Redis."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import mageflow
import pytest
from mageflow import (
    InvalidTransitionError,
    MageflowRuntime,
    PauseActionTypes,
    SignatureNotFoundError,
    SignatureStatus,
    TaskSignature,
    TaskStatus,
)
from mageflow.inmemory import InMemoryTaskManager

from tests.integration._helpers import Raw
from tests.integration.models import OrderMsg

pytestmark = pytest.mark.usefixtures("runtime")


def _register(manager: InMemoryTaskManager, seen: list[Any], name: str = "process-order") -> Any:
    @manager.task(name, input_validator=OrderMsg)
    async def process(msg: OrderMsg) -> dict[str, Any]:
        seen.append(msg)
        return {"order_id": msg.order_id}

    return process


# -- asign / sign ----------------------------------------------------------------


async def test_asign_by_name_binds_extra_keywords_as_kwargs(raw: Raw) -> None:
    sig = await mageflow.asign("send-notification", template="welcome", priority="high")
    assert isinstance(sig, TaskSignature)
    assert sig.task_name == "send-notification"
    assert sig.kwargs == {"template": "welcome", "priority": "high"}
    assert sig.status == SignatureStatus.PENDING
    loaded = await mageflow.load_signature(sig.key)
    assert loaded == sig
    stored = await raw.hash(sig.key)
    assert stored["k:template"] == '"welcome"'
    assert stored["s"] == "pending"


async def test_sign_is_asign() -> None:
    assert mageflow.sign is mageflow.asign
    sig = await mageflow.sign("t", a=1)
    assert (await mageflow.load_signature(sig.key)) == sig


async def test_explicit_kwargs_plus_extra_keywords() -> None:
    sig = await mageflow.asign("t", kwargs={"a": 1, "nested": {"x": [1, 2]}}, b="two")
    assert sig.kwargs == {"a": 1, "nested": {"x": [1, 2]}, "b": "two"}
    loaded = await mageflow.load_signature(sig.key)
    assert loaded is not None
    assert loaded.kwargs == {"a": 1, "nested": {"x": [1, 2]}, "b": "two"}


async def test_asign_by_task_object_uses_its_name_and_model(
    manager: InMemoryTaskManager,
) -> None:
    task = _register(manager, [])
    sig = await mageflow.asign(task, priority="high")
    assert sig.task_name == "process-order"
    assert sig.model_validators_path == "tests.integration.models:OrderMsg"
    by_fn = await mageflow.asign(task.fn)
    assert by_fn.task_name == "process-order"
    by_name = await mageflow.asign("process-order")
    assert by_name.model_validators_path == "tests.integration.models:OrderMsg"


async def test_asign_with_every_option() -> None:
    cb_ok = await mageflow.asign("ok-cb")
    cb_err = await mageflow.asign("err-cb")
    when = datetime(2024, 2, 3, 4, 5, 6, tzinfo=UTC)
    sig = await mageflow.asign(
        "t",
        key="task-custom-key",
        kwargs={"a": 1},
        creation_time=when,
        model_validators=OrderMsg,
        success_callbacks=[cb_ok],
        error_callbacks=[cb_err.key],
        task_status="suspended",
        task_identifiers={"order_id": "o-9"},
    )
    loaded = await mageflow.load_signature("task-custom-key")
    assert loaded == sig
    assert loaded.creation_time == when
    assert loaded.success_callbacks == [cb_ok.key]
    assert loaded.error_callbacks == [cb_err.key]
    assert loaded.task_status == TaskStatus(status="suspended")
    assert loaded.task_identifiers == {"order_id": "o-9"}
    assert loaded.validator_model() is OrderMsg


async def test_asign_id_option_is_the_key() -> None:
    sig = await mageflow.asign("t", id="task-by-id")
    assert sig.key == sig.id == "task-by-id"
    assert (await mageflow.load_signature("task-by-id")) == sig


async def test_asign_task_status_object() -> None:
    sig = await mageflow.asign(
        "t", task_status=TaskStatus(status="suspended", last_status="active")
    )
    await sig.resume()
    assert sig.task_status.status == SignatureStatus.ACTIVE


async def test_load_signature_returns_none_when_absent() -> None:
    assert await mageflow.load_signature("task-does-not-exist") is None


# -- resume / pause / remove ---------------------------------------------------------


async def test_pause_and_resume_by_key(raw: Raw) -> None:
    sig = await mageflow.asign("t")
    await mageflow.pause(sig.key)
    assert await raw.status(sig.key) == "suspended"
    await mageflow.resume(sig.key)
    assert await raw.status(sig.key) == "pending"
    await mageflow.pause(sig.key, PauseActionTypes.SUSPEND)
    await mageflow.resume_task(sig.key)
    assert await raw.status(sig.key) == "pending"
    await mageflow.pause(sig.key, pause_type=PauseActionTypes.INTERRUPT)
    assert await raw.status(sig.key) == "interrupted"
    await mageflow.resume_task(sig.key)
    assert await raw.status(sig.key) == "pending"
    await mageflow.pause(sig.key, "interrupt")  # type: ignore[arg-type]
    assert await raw.status(sig.key) == "interrupted"
    assert mageflow.resume_task is mageflow.resume


async def test_remove_by_key_removes_callbacks_recursively() -> None:
    grandchild = await mageflow.asign("gc")
    child_ok = await mageflow.asign("ok", success_callbacks=[grandchild])
    child_err = await mageflow.asign("err")
    sig = await mageflow.asign("t", success_callbacks=[child_ok], error_callbacks=[child_err])
    await mageflow.remove(sig.key)
    for key in (sig.key, child_ok.key, child_err.key, grandchild.key):
        assert await mageflow.load_signature(key) is None
    with pytest.raises(SignatureNotFoundError):  # like pause/resume of a missing key
        await mageflow.remove(sig.key)


async def test_delete_signature_leaves_callbacks() -> None:
    cb = await mageflow.asign("cb")
    sig = await mageflow.asign("t", success_callbacks=[cb])
    await TaskSignature.delete_signature(sig.key)
    assert await mageflow.load_signature(sig.key) is None
    assert await mageflow.load_signature(cb.key) == cb


@pytest.mark.parametrize(
    ("with_error", "with_success"), [(True, True), (True, False), (False, True), (False, False)]
)
async def test_signature_remove_chooses_callbacks(with_error: bool, with_success: bool) -> None:
    ok_child = await mageflow.asign("okc")
    ok = await mageflow.asign("ok", error_callbacks=[ok_child])
    err_child = await mageflow.asign("errc")
    err = await mageflow.asign("err", success_callbacks=[err_child])
    sig = await mageflow.asign("t", success_callbacks=[ok], error_callbacks=[err])
    await sig.remove(with_error=with_error, with_success=with_success)
    assert await mageflow.load_signature(sig.key) is None
    gone_ok = await mageflow.load_signature(ok.key) is None
    gone_err = await mageflow.load_signature(err.key) is None
    assert gone_ok is with_success
    assert gone_err is with_error
    # Recursion follows the same choice below the first level.
    assert (await mageflow.load_signature(ok_child.key) is None) is (with_success and with_error)
    assert (await mageflow.load_signature(err_child.key) is None) is (with_error and with_success)


async def test_remove_handles_callback_cycles() -> None:
    a = await mageflow.asign("a")
    b = await mageflow.asign("b", success_callbacks=[a])
    await a.add_callbacks(success=[b])
    await a.remove()
    assert await mageflow.load_signature(a.key) is None
    assert await mageflow.load_signature(b.key) is None


# -- lock_task ------------------------------------------------------------------------


async def test_lock_task_yields_the_signature_and_holder_can_transition(raw: Raw) -> None:
    sig = await mageflow.asign("t", a=1)
    async with mageflow.lock_task(sig.key) as held:
        assert held == sig
        await held.suspend()
        await mageflow.resume(sig.key)
        await held.kwargs.aupdate(b=2)
        assert await raw.client.exists(raw.rt.store.keys.lock(sig.key)) == 1
    assert await raw.client.exists(raw.rt.store.keys.lock(sig.key)) == 0
    loaded = await mageflow.load_signature(sig.key)
    assert loaded is not None
    assert loaded.kwargs == {"a": 1, "b": 2}
    assert loaded.status == SignatureStatus.PENDING


async def test_lock_task_of_missing_key() -> None:
    with pytest.raises(SignatureNotFoundError, match="task-missing"):
        async with mageflow.lock_task("task-missing"):
            pass


# -- signature methods -----------------------------------------------------------------


async def test_aio_run_no_wait_runs_the_task(manager: InMemoryTaskManager, raw: Raw) -> None:
    seen: list[OrderMsg] = []
    task = _register(manager, seen)
    sig = await mageflow.asign(task, priority="high")
    await sig.aio_run_no_wait(OrderMsg(order_id=7), trace="abc")
    await manager.wait_idle()
    assert seen == [OrderMsg(order_id=7, priority="high")]
    assert await raw.status(sig.key) == "done"
    (record,) = manager.runs.values()
    assert record.options == {"trace": "abc"}
    assert record.input == {"order_id": 7, "priority": "high"}
    assert json.loads((await raw.hash(sig.key))["res"]) == {"order_id": 7}


async def test_aio_run_no_wait_with_dict_and_no_message(manager: InMemoryTaskManager) -> None:
    seen: list[OrderMsg] = []
    task = _register(manager, seen)
    sig = await mageflow.asign(task)
    await sig.aio_run_no_wait({"order_id": "3"})
    bound = await mageflow.asign(task, order_id=4)
    await bound.aio_run_no_wait()
    await manager.wait_idle()
    assert sorted(m.order_id for m in seen) == [3, 4]


async def test_running_a_running_or_finished_signature_is_refused(
    manager: InMemoryTaskManager, raw: Raw
) -> None:
    task = _register(manager, [])
    sig = await mageflow.asign(task)
    await sig.aio_run_no_wait(OrderMsg(order_id=1))
    await manager.wait_idle()
    before = await raw.hash(sig.key)
    with pytest.raises(InvalidTransitionError, match=rf"{sig.key}.*'done'"):
        await sig.aio_run_no_wait(OrderMsg(order_id=2))
    assert await raw.hash(sig.key) == before
    assert len(manager.runs) == 1


async def test_add_callbacks_with_signatures_and_keys(raw: Raw) -> None:
    sig = await mageflow.asign("t")
    a = await mageflow.asign("a")
    b = await mageflow.asign("b")
    c = await mageflow.asign("c")
    await sig.add_callbacks(success=[a, b.key], errors=[c])
    await sig.add_callbacks(success=[a])  # duplicates are ignored
    assert sig.success_callbacks == [a.key, b.key]
    assert sig.error_callbacks == [c.key]
    loaded = await mageflow.load_signature(sig.key)
    assert loaded is not None
    assert loaded.success_callbacks == [a.key, b.key]
    assert loaded.error_callbacks == [c.key]


async def test_add_callbacks_missing_callback_changes_nothing(raw: Raw) -> None:
    sig = await mageflow.asign("t")
    a = await mageflow.asign("a")
    before = await raw.hash(sig.key)
    with pytest.raises(SignatureNotFoundError, match="task-nope") as info:
        await sig.add_callbacks(success=[a], errors=["task-nope"])
    assert info.value.key == "task-nope"
    assert await raw.hash(sig.key) == before


async def test_signature_lifecycle_methods(raw: Raw) -> None:
    sig = await mageflow.asign("t")
    await sig.suspend()
    assert sig.task_status == TaskStatus(status="suspended", last_status="pending")
    assert await raw.status(sig.key) == "suspended"
    await sig.resume()
    assert sig.task_status.status == SignatureStatus.PENDING
    await sig.pause_task()
    assert sig.status == SignatureStatus.SUSPENDED
    await sig.resume()
    await sig.pause_task(PauseActionTypes.INTERRUPT)
    assert sig.status == SignatureStatus.INTERRUPTED
    assert await raw.status(sig.key) == "interrupted"
    await sig.resume()
    assert sig.status == SignatureStatus.PENDING
    await sig.interrupt()
    assert await raw.status(sig.key) == "interrupted"
    await sig.interrupt()  # repeating is a no-op
    assert sig.status == SignatureStatus.INTERRUPTED


async def test_kwargs_aupdate_is_persisted(raw: Raw) -> None:
    sig = await mageflow.asign("t", a=1, b={"x": 1})
    await sig.kwargs.aupdate(b={"y": 2}, c=[1, 2])
    await sig.kwargs.aupdate({"d": None})
    assert sig.kwargs == {"a": 1, "b": {"y": 2}, "c": [1, 2], "d": None}
    loaded = await mageflow.load_signature(sig.key)
    assert loaded is not None
    assert loaded.kwargs == {"a": 1, "b": {"y": 2}, "c": [1, 2], "d": None}
    # Two stale copies updating different kwargs do not lose each other's write.
    other = await mageflow.load_signature(sig.key)
    assert other is not None
    await other.kwargs.aupdate(e=5)
    await sig.kwargs.aupdate(f=6)
    final = await mageflow.load_signature(sig.key)
    assert final is not None
    assert final.kwargs["e"] == 5
    assert final.kwargs["f"] == 6


async def test_kwargs_aupdate_of_finished_signature_is_refused(
    manager: InMemoryTaskManager, raw: Raw
) -> None:
    task = _register(manager, [])
    sig = await mageflow.asign(task)
    await sig.aio_run_no_wait(OrderMsg(order_id=1))
    await manager.wait_idle()
    before = await raw.hash(sig.key)
    with pytest.raises(InvalidTransitionError, match=sig.key):
        await sig.kwargs.aupdate(x=1)
    assert await raw.hash(sig.key) == before


async def test_configure_without_manager_refuses_to_run(runtime: MageflowRuntime) -> None:
    bare = MageflowRuntime(runtime.store, None)
    sig = await bare.sign("t")
    with pytest.raises(mageflow.ConfigurationError, match="task manager"):
        await bare.run(sig, None, {})


async def test_inmemory_task_infers_model_from_postponed_annotation(
    manager: InMemoryTaskManager,
) -> None:
    # This module uses `from __future__ import annotations`: annotations are strings.
    @manager.task("annotated")
    async def annotated(msg: OrderMsg) -> int:
        return msg.order_id

    assert annotated.input_validator is OrderMsg
    sig = await mageflow.asign(annotated)
    assert sig.model_validators_path == "tests.integration.models:OrderMsg"
