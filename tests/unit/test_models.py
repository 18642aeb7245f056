"""thirdmagic models: JSON round trips, aliases, callbacks, validators, bad values."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError
from thirdmagic import (
    AnySignature,
    ChainSignature,
    MageflowValidationError,
    SignatureStatus,
    SwarmConfig,
    SwarmSignature,
    TaskSignature,
    TaskStatus,
    import_model,
    model_import_path,
    to_json_value,
)
from thirdmagic.signature import SignatureKwargs

ANY_SIGNATURE: TypeAdapter[Any] = TypeAdapter(AnySignature)


class OrderInput(BaseModel):
    order_id: int
    note: str = ""


class Outer:
    class Nested(BaseModel):
        x: int


def _full_task() -> TaskSignature:
    cb = TaskSignature(task_name="cb")
    return TaskSignature(
        key="task-full",
        task_name="process-order",
        kwargs={"a": 1, "b": [1, 2.5, {"c": None, "d": "é"}], "flag": True},
        creation_time=datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
        model_validators=OrderInput,
        success_callbacks=[cb, "task-other"],
        error_callbacks=["task-err"],
        task_status=TaskStatus(status=SignatureStatus.SUSPENDED, last_status="active"),
        task_identifiers={"order_id": "o-1", "n": 3},
    )


def _examples() -> list[Any]:
    member = TaskSignature(task_name="m")
    return [
        TaskSignature(task_name="plain"),
        _full_task(),
        ChainSignature(tasks=[member, "task-2"], kwargs={"z": [1]}, error_callbacks=["e"]),
        SwarmSignature(
            config=SwarmConfig(max_concurrency=3, stop_after_n_failures=2, max_task_allowed=9),
            is_swarm_closed=True,
            task_identifiers={"batch": 7},
        ),
    ]


# -- JSON round trips --------------------------------------------------------


@pytest.mark.parametrize("sig", _examples(), ids=lambda s: f"{s.kind}-{s.task_name}")
def test_json_round_trip_is_lossless(sig: Any) -> None:
    cls = type(sig)
    again = cls.model_validate_json(sig.model_dump_json())
    assert again == sig
    assert again.model_dump() == sig.model_dump()
    assert isinstance(again.kwargs, SignatureKwargs)
    # Going through a plain json string (what a store or a queue would hold) too.
    again2 = cls.model_validate(json.loads(json.dumps(sig.model_dump(mode="json"))))
    assert again2 == sig


@pytest.mark.parametrize("sig", _examples(), ids=lambda s: f"{s.kind}-{s.task_name}")
def test_discriminated_union_round_trip(sig: Any) -> None:
    raw = ANY_SIGNATURE.dump_json(sig)
    again = ANY_SIGNATURE.validate_json(raw)
    assert type(again) is type(sig)
    assert again == sig
    assert ANY_SIGNATURE.validate_python(ANY_SIGNATURE.dump_python(sig, mode="json")) == sig


def test_discriminator_rejects_unknown_kind() -> None:
    with pytest.raises(ValidationError):
        ANY_SIGNATURE.validate_python({"kind": "nope", "task_name": "t"})


def test_round_trip_keeps_timezone_and_status() -> None:
    sig = _full_task()
    again = TaskSignature.model_validate_json(sig.model_dump_json())
    assert again.creation_time == datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    assert again.creation_time.utcoffset() == timedelta(0)
    assert again.task_status == TaskStatus(status="suspended", last_status="active")
    assert again.model_validators_path == f"{__name__}:OrderInput"
    assert again.validator_model() is OrderInput


def test_default_creation_time_is_aware_utc() -> None:
    sig = TaskSignature(task_name="t")
    assert sig.creation_time.tzinfo is not None
    assert sig.creation_time.utcoffset() == timedelta(0)


def test_creation_time_other_timezone_is_normalised_to_utc() -> None:
    tz = timezone(timedelta(hours=3))
    sig = TaskSignature(task_name="t", creation_time=datetime(2024, 1, 1, 12, tzinfo=tz))
    assert sig.creation_time == datetime(2024, 1, 1, 9, tzinfo=UTC)
    assert sig.creation_time.tzinfo == UTC


def test_naive_creation_time_is_local_time_stored_as_utc() -> None:
    naive = datetime(2024, 1, 1, 12, 30)
    sig = TaskSignature(task_name="t", creation_time=naive)
    assert sig.creation_time.tzinfo == UTC
    assert sig.creation_time == naive.astimezone(UTC)  # the process's local time zone


# -- key / id ------------------------------------------------------------------


def test_id_is_an_alias_of_key_on_input_and_as_property() -> None:
    by_id = TaskSignature(id="task-abc", task_name="t")
    by_key = TaskSignature(key="task-abc", task_name="t")
    assert by_id.key == by_key.key == "task-abc"
    assert by_id.id == "task-abc"
    assert TaskSignature.model_validate({"id": "x-1", "task_name": "t"}).key == "x-1"


def test_generated_keys_are_unique_and_prefixed_by_kind() -> None:
    keys = {TaskSignature(task_name="t").key for _ in range(200)}
    assert len(keys) == 200
    assert all(k.startswith("task-") for k in keys)
    assert ChainSignature().key.startswith("chain-")
    assert SwarmSignature().key.startswith("swarm-")


@pytest.mark.parametrize("bad", ["a b", " ", "x" * 201, 5])
def test_bad_keys_are_rejected_naming_key(bad: Any) -> None:
    with pytest.raises(ValueError, match="key"):
        TaskSignature(key=bad, task_name="t")


@pytest.mark.parametrize("bad", ["", "   ", None, 3])
def test_bad_task_name_is_rejected(bad: Any) -> None:
    with pytest.raises(ValueError, match="task_name"):
        TaskSignature(task_name=bad)


# -- callbacks -------------------------------------------------------------------


def test_callbacks_accept_signatures_or_keys() -> None:
    a = TaskSignature(task_name="a")
    b = ChainSignature()
    sig = TaskSignature(task_name="t", success_callbacks=[a, "task-k"], error_callbacks=[b])
    assert sig.success_callbacks == [a.key, "task-k"]
    assert sig.error_callbacks == [b.key]
    single = TaskSignature(task_name="t", success_callbacks=a, error_callbacks="task-e")
    assert single.success_callbacks == [a.key]
    assert single.error_callbacks == ["task-e"]
    assert TaskSignature(task_name="t", success_callbacks=None).success_callbacks == []


@pytest.mark.parametrize("field", ["success_callbacks", "error_callbacks"])
@pytest.mark.parametrize("bad", [[1], [""], [None], [{"key": "x"}]])
def test_callbacks_reject_other_values_naming_field(field: str, bad: Any) -> None:
    with pytest.raises(ValueError, match=field):
        TaskSignature(task_name="t", **{field: bad})


def test_chain_tasks_accept_signatures_or_keys() -> None:
    a = TaskSignature(task_name="a")
    assert ChainSignature(tasks=[a, "k"]).tasks == [a.key, "k"]


# -- model_validators --------------------------------------------------------------


def test_model_validators_is_stored_as_import_path() -> None:
    sig = TaskSignature(task_name="t", model_validators=OrderInput)
    assert sig.model_validators_path == f"{__name__}:OrderInput"
    dumped = sig.model_dump(mode="json")
    assert dumped["model_validators_path"] == f"{__name__}:OrderInput"
    assert "pickle" not in sig.model_dump_json()
    assert sig.validator_model() is OrderInput


def test_model_validators_nested_class_path_resolves() -> None:
    path = model_import_path(Outer.Nested)
    assert path == f"{__name__}:Outer.Nested"
    assert import_model(path) is Outer.Nested


def test_model_validators_accepts_an_import_path_string() -> None:
    sig = TaskSignature(task_name="t", model_validators=f"{__name__}:OrderInput")
    assert sig.validator_model() is OrderInput


def test_function_local_model_is_rejected_naming_the_field() -> None:
    class LocalModel(BaseModel):
        x: int

    with pytest.raises(ValueError, match="model_validators") as info:
        TaskSignature(task_name="t", model_validators=LocalModel)
    assert "LocalModel" in str(info.value)
    with pytest.raises(MageflowValidationError, match="model_validators") as direct:
        model_import_path(LocalModel)
    assert direct.value.field == "model_validators"


@pytest.mark.parametrize(
    "path",
    [
        "no_colon",
        ":Cls",
        "mod:",
        "tests.unit.does_not_exist:X",
        f"{__name__}:Missing",
        f"{__name__}:Outer",
        "json:dumps",
    ],
)
def test_import_model_rejects_bad_paths_naming_the_field(path: str) -> None:
    with pytest.raises(MageflowValidationError, match="model_validators") as info:
        import_model(path)
    assert info.value.field == "model_validators"


def test_model_validators_rejects_non_model_values() -> None:
    with pytest.raises(ValueError, match="model_validators"):
        TaskSignature(task_name="t", model_validators=int)
    with pytest.raises(ValueError, match="model_validators"):
        TaskSignature(task_name="t", model_validators=3)


# -- kwargs and identifiers ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "name"),
    [(object(), "obj"), (float("nan"), "nan"), (lambda: 1, "fn"), ({1: object()}, "nested")],
)
def test_non_json_kwargs_are_rejected_naming_the_kwarg(value: Any, name: str) -> None:
    with pytest.raises(ValueError, match=rf"kwargs\.{name}"):
        TaskSignature(task_name="t", kwargs={"fine": 1, name: value})


def test_non_json_identifiers_are_rejected_naming_the_identifier() -> None:
    with pytest.raises(ValueError, match=r"task_identifiers\.bad"):
        TaskSignature(task_name="t", task_identifiers={"bad": object()})


def test_kwargs_must_be_a_mapping() -> None:
    with pytest.raises(ValueError, match="kwargs"):
        TaskSignature(task_name="t", kwargs=[1, 2])


def test_kwargs_are_normalised_to_json_values() -> None:
    when = datetime(2024, 1, 1, tzinfo=UTC)
    sig = TaskSignature(
        task_name="t",
        kwargs={"when": when, "model": OrderInput(order_id=1), "dec": Decimal("1.5")},
    )
    assert sig.kwargs == {
        "when": "2024-01-01T00:00:00Z",
        "model": {"order_id": 1, "note": ""},
        "dec": "1.5",
    }
    assert TaskSignature.model_validate_json(sig.model_dump_json()) == sig


def test_kwargs_from_a_model() -> None:
    sig = TaskSignature(task_name="t", kwargs=OrderInput(order_id=4))
    assert sig.kwargs == {"order_id": 4, "note": ""}


def test_to_json_value_names_the_field() -> None:
    with pytest.raises(MageflowValidationError) as info:
        to_json_value({1, object()}, field="kwargs.s")
    assert info.value.field == "kwargs.s"
    assert "kwargs.s" in str(info.value)


def test_swarm_config_bounds_raise_mageflow_validation_error_naming_the_field() -> None:
    for name in ("max_concurrency", "max_task_allowed", "stop_after_n_failures"):
        with pytest.raises(MageflowValidationError, match=name) as info:
            SwarmConfig(**{name: 0})
        assert info.value.field == name
    with pytest.raises(MageflowValidationError) as bad_type:
        SwarmConfig(max_concurrency="many")
    assert bad_type.value.field == "max_concurrency"


def test_thirdmagic_signature_errors_name_the_field() -> None:
    with pytest.raises(MageflowValidationError) as info:
        TaskSignature(task_name="t", kwargs={"when": object()})
    assert info.value.field == "kwargs.when"
    with pytest.raises(MageflowValidationError) as missing:
        TaskSignature()  # type: ignore[call-arg]
    assert missing.value.field == "task_name"


def test_model_validators_with_two_return_values_is_rejected_naming_both() -> None:
    from thirdmagic import ReturnValue

    class_ns: dict[str, Any] = {"__annotations__": {"a": ReturnValue[int], "b": ReturnValue[int]}}
    two = type("TwoMarkedModel", (BaseModel,), {**class_ns, "__module__": __name__})
    with pytest.raises(ValueError, match="'a', 'b'"):
        TaskSignature(task_name="t", model_validators=two)
