"""ReturnValue marking and the resolution of a callback's return-value field."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from pydantic import BaseModel
from thirdmagic import (
    DEFAULT_RESULTS_FIELD,
    LEGACY_RESULTS_FIELD,
    MageflowValidationError,
    ReturnValue,
    inject_return_value,
    resolve_return_field,
)


class ShortForm(BaseModel):
    order: ReturnValue[dict[str, Any]]
    note: str = ""


class ExplicitForm(BaseModel):
    note: str = ""
    total: Annotated[float, ReturnValue()]


class DefaultField(BaseModel):
    mageflow_results: int
    results: int = 0


class LegacyField(BaseModel):
    results: str
    other: int = 0


class NoField(BaseModel):
    x: int = 0


class MarkedBeatsDefault(BaseModel):
    mageflow_results: int = 0
    results: int = 0
    picked: ReturnValue[int]


class TwoMarked(BaseModel):
    first: ReturnValue[int]
    second: Annotated[str, ReturnValue()]


class ThreeMarked(BaseModel):
    a: ReturnValue[int]
    b: ReturnValue[int]
    c: ReturnValue[int]


@pytest.mark.parametrize(
    ("model", "field"),
    [
        (ShortForm, "order"),
        (ExplicitForm, "total"),
        (DefaultField, DEFAULT_RESULTS_FIELD),
        (LegacyField, LEGACY_RESULTS_FIELD),
        (NoField, DEFAULT_RESULTS_FIELD),
        (MarkedBeatsDefault, "picked"),
        (None, DEFAULT_RESULTS_FIELD),
    ],
)
def test_resolution(model: type[BaseModel] | None, field: str) -> None:
    assert resolve_return_field(model) == field


def test_constants() -> None:
    assert DEFAULT_RESULTS_FIELD == "mageflow_results"
    assert LEGACY_RESULTS_FIELD == "results"


def test_short_form_is_the_explicit_form() -> None:
    assert ReturnValue[int] == Annotated[int, ReturnValue()]
    assert ReturnValue() == ReturnValue()
    assert hash(ReturnValue()) == hash(ReturnValue())
    assert repr(ReturnValue()) == "ReturnValue()"


def test_marked_fields_keep_their_type() -> None:
    m = ShortForm(order={"a": 1})
    assert m.order == {"a": 1}
    with pytest.raises(ValueError):
        ExplicitForm(total="not a number")
    assert ExplicitForm(total=2).total == 2.0


def test_two_marked_fields_is_an_error_naming_both() -> None:
    with pytest.raises(MageflowValidationError) as info:
        resolve_return_field(TwoMarked)
    msg = str(info.value)
    assert "'first'" in msg
    assert "'second'" in msg
    assert "TwoMarked" in msg


def test_three_marked_fields_names_all() -> None:
    with pytest.raises(MageflowValidationError) as info:
        resolve_return_field(ThreeMarked)
    assert all(f"'{n}'" in str(info.value) for n in "abc")


def test_inject_return_value_writes_the_resolved_field_and_wins() -> None:
    bound = {"note": "bound", "total": 99}
    out = inject_return_value(ExplicitForm, bound, 3.5)
    assert out == {"note": "bound", "total": 3.5}
    assert bound == {"note": "bound", "total": 99}  # not mutated
    assert inject_return_value(None, {}, [1]) == {"mageflow_results": [1]}
    assert inject_return_value(LegacyField, {"other": 1}, "r") == {"other": 1, "results": "r"}
    assert ExplicitForm.model_validate(out).total == 3.5


def test_inject_into_two_marked_fields_raises() -> None:
    with pytest.raises(MageflowValidationError, match="first"):
        inject_return_value(TwoMarked, {}, 1)
