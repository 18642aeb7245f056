"""Every spelling the spec pages use, old and new, works against a real Redis.

The older signature reference and callbacks guide use ``sign``, ``id``,
``resume_task``, ``results``, ``Annotated[T, ReturnValue()]`` imported from
``mageflow.models.message`` and ``model_validators=ContextMessage``; the newer
ones use ``asign``, ``key``, ``resume``, ``mageflow_results`` and
``thirdmagic.message.ReturnValue[T]``. Both must keep working.
"""

from __future__ import annotations

from typing import Annotated, Any

import mageflow
import pytest
import thirdmagic.message
from mageflow import SignatureStatus, TaskSignature
from mageflow.inmemory import InMemoryTaskManager
from pydantic import BaseModel

from tests.integration._helpers import eventually

pytestmark = pytest.mark.usefixtures("runtime")


def test_older_import_path_is_the_same_object() -> None:
    from mageflow.models.message import ContextMessage, ReturnValue

    assert ReturnValue is thirdmagic.message.ReturnValue
    assert ContextMessage is thirdmagic.message.ContextMessage
    assert mageflow.models.message.ReturnValue is ReturnValue


class OldStyleCallback(BaseModel):
    # the older guide's spelling, imported from the older module
    from mageflow.models.message import ReturnValue as _RV

    task_result: Annotated[Any, _RV()]
    field_int: int


class LegacyResults(BaseModel):
    results: str
    field_int: int


async def test_older_guide_flow_runs(manager: InMemoryTaskManager) -> None:
    got: list[Any] = []

    @manager.task("old-parent")
    async def parent(msg: Any) -> str:
        return "parent-result"

    @manager.task("old-callback", input_validator=OldStyleCallback)
    async def old_cb(msg: OldStyleCallback) -> None:
        got.append(("annotated", msg.task_result, msg.field_int))

    @manager.task("legacy-callback", input_validator=LegacyResults)
    async def legacy_cb(msg: LegacyResults) -> None:
        got.append(("results", msg.results, msg.field_int))

    cb1 = await mageflow.sign(old_cb, field_int=1)
    cb2 = await mageflow.sign("legacy-callback", field_int=2)
    main = await mageflow.sign("old-parent", success_callbacks=[cb1, cb2])
    await main.aio_run_no_wait({})
    await manager.wait_idle()
    assert sorted(got) == [("annotated", "parent-result", 1), ("results", "parent-result", 2)]


async def test_context_message_as_model_validators(manager: InMemoryTaskManager) -> None:
    from mageflow.models.message import ContextMessage

    seen: list[dict[str, Any]] = []

    @manager.task("validate-data")
    async def validate(msg: Any) -> None:
        seen.append(msg.model_dump() if isinstance(msg, BaseModel) else msg)

    sig = await mageflow.sign("validate-data", model_validators=ContextMessage, level=3)
    loaded = await mageflow.load_signature(sig.id)
    assert loaded is not None
    await sig.aio_run_no_wait({"payload": "x"})
    await manager.wait_idle()
    assert seen == [{"level": 3, "payload": "x"}]


async def test_id_option_resume_task_and_id_property() -> None:
    sig = await mageflow.sign("t", id="older-spelled-key")
    assert sig.id == sig.key == "older-spelled-key"
    assert isinstance(await mageflow.load_signature("older-spelled-key"), TaskSignature)
    await sig.pause_task()
    await mageflow.resume_task(sig.id)
    loaded = await mageflow.load_signature(sig.id)
    assert loaded is not None and loaded.status == SignatureStatus.PENDING
    await TaskSignature.delete_signature(sig.id)

    async def gone() -> bool:
        return await mageflow.load_signature(sig.id) is None

    await eventually(gone)


async def test_loaded_model_validators_is_the_class() -> None:
    from mageflow.models.message import ContextMessage

    from tests.integration.models import OrderMsg

    by_class = await mageflow.asign("validate-data", model_validators=OrderMsg)
    by_path = await mageflow.asign("t", model_validators="thirdmagic.message:ContextMessage")
    for sig, model in ((by_class, OrderMsg), (by_path, ContextMessage)):
        loaded = await mageflow.load_signature(sig.key)
        assert loaded is not None
        assert loaded.model_validators is model
        assert sig.model_validators is model
        assert loaded.model_validators_path == f"{model.__module__}:{model.__qualname__}"


async def test_unimportable_stored_model_names_the_field() -> None:
    from mageflow import MageflowValidationError

    sig = await mageflow.asign("t", model_validators="no_such_module_xyz:Model")
    loaded = await mageflow.load_signature(sig.key)
    assert loaded is not None and loaded.model_validators_path == "no_such_module_xyz:Model"
    with pytest.raises(MageflowValidationError) as info:
        _ = loaded.model_validators
    assert info.value.field == "model_validators"


async def test_tools_read_a_signature_whose_model_this_process_cannot_import() -> None:
    """model_validators is the class when importable; tools work from the stored path."""
    from mageflow import _inspect

    sig = await mageflow.asign("t", model_validators="no_such_module_xyz:Model")
    described = await _inspect.describe(mageflow.get_runtime(), sig.key)
    assert described["model_validators"] == "no_such_module_xyz:Model"
