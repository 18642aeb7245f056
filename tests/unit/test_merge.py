"""Merge rules of mageflow._merge: how message, bound kwargs and results combine."""

from __future__ import annotations

from typing import Any

import pytest
from mageflow import _merge
from pydantic import BaseModel, Field
from thirdmagic import MageflowValidationError, ReturnValue


class Msg(BaseModel):
    order_id: int
    priority: str = "low"


class Aliased(BaseModel):
    user_name: str = Field(alias="userName")


class Callback(BaseModel):
    result: ReturnValue[Any]
    tag: str = ""


class Nested(BaseModel):
    inner: Msg


def test_message_data_from_model_dict_and_none() -> None:
    assert _merge.message_data(None) == {}
    assert _merge.message_data(Msg(order_id=1)) == {"order_id": 1, "priority": "low"}
    assert _merge.message_data({"a": 1}) == {"a": 1}
    assert _merge.message_data(Aliased(userName="x")) == {"userName": "x"}


def test_message_data_rejects_non_json_naming_the_field() -> None:
    with pytest.raises(MageflowValidationError, match=r"msg\.bad") as info:
        _merge.message_data({"ok": 1, "bad": object()})
    assert info.value.field == "msg.bad"


def test_message_data_rejects_other_types() -> None:
    with pytest.raises(MageflowValidationError, match="msg") as info:
        _merge.message_data([1, 2])  # type: ignore[arg-type]
    assert info.value.field == "msg"


def test_task_input_bound_kwargs_win_over_message() -> None:
    out = _merge.task_input(Msg(order_id=1, priority="low"), {"priority": "high", "x": 2})
    assert out == {"order_id": 1, "priority": "high", "x": 2}
    assert _merge.task_input(None, {"a": 1}) == {"a": 1}
    assert _merge.task_input({"a": 1}, {}) == {"a": 1}


def test_rebind_at_start_applies_later_kwargs_but_keeps_the_return_value() -> None:
    payload = {"result": 42, "tag": "old"}
    out = _merge.rebind_at_start(payload, {"result": "bound", "tag": "new"}, Callback)
    assert out == {"result": 42, "tag": "new"}
    assert payload == {"result": 42, "tag": "old"}


def test_rebind_at_start_without_model_or_bound() -> None:
    payload = {"a": 1, "mageflow_results": 5}
    assert _merge.rebind_at_start(payload, {}, None) is payload
    # Without a model there is no known return field: bound kwargs win everywhere.
    assert _merge.rebind_at_start(payload, {"a": 2}, None) == {"a": 2, "mageflow_results": 5}


def test_rebind_at_start_fills_return_field_when_absent() -> None:
    assert _merge.rebind_at_start({"tag": "t"}, {"result": 1}, Callback) == {
        "tag": "t",
        "result": 1,
    }


def test_success_callback_input_return_value_wins() -> None:
    out = _merge.success_callback_input(Callback, {"tag": "a", "result": "bound"}, {"v": 1})
    assert out == {"tag": "a", "result": {"v": 1}}
    assert _merge.success_callback_input(None, {"tag": "a"}, 3) == {
        "tag": "a",
        "mageflow_results": 3,
    }


def test_error_callback_input_bound_kwargs_win_over_original() -> None:
    original = {"order_id": 1, "priority": "low"}
    out = _merge.error_callback_input(original, {"priority": "urgent", "who": "ops"})
    assert out == {"order_id": 1, "priority": "urgent", "who": "ops"}
    assert original == {"order_id": 1, "priority": "low"}


def test_validate_input_ok() -> None:
    got = _merge.validate_input(Msg, {"order_id": "3"}, key="k", task_name="t")
    assert isinstance(got, Msg)
    assert got.order_id == 3


@pytest.mark.parametrize(
    ("model", "data", "field"),
    [
        (Msg, {}, "order_id"),
        (Msg, {"order_id": "abc"}, "order_id"),
        (Nested, {"inner": {"order_id": "x"}}, "inner.order_id"),
    ],
)
def test_validate_input_error_names_the_field_and_key(
    model: type[BaseModel], data: dict[str, Any], field: str
) -> None:
    with pytest.raises(MageflowValidationError) as info:
        _merge.validate_input(model, data, key="task-1", task_name="process")
    err = info.value
    assert err.field == field
    assert err.key == "task-1"
    assert f"'{field}'" in str(err)
    assert "'task-1'" in str(err)
    assert "'process'" in str(err)
    assert model.__qualname__ in str(err)
