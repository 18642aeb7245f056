"""Issue 11.5: the silent surprises now fail loudly (real Redis)."""

from __future__ import annotations

from typing import Any

import mageflow
import pytest
from mageflow import (
    MageflowValidationError,
    SwarmClosedError,
    SwarmConfig,
    SwarmFullError,
    TaskSignature,
)

from tests.integration._helpers import Raw

pytestmark = pytest.mark.usefixtures("runtime")


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("sucess_callbacks", "success_callbacks"),
        ("error_callback", "error_callbacks"),
        ("model_validator", "model_validators"),
        ("task_identifier", "task_identifiers"),
        ("kwarg", "kwargs"),
    ],
)
async def test_near_miss_option_is_refused_naming_it(raw: Raw, typo: str, meant: str) -> None:
    cb = await mageflow.asign("cb")
    before = await raw.snapshot()
    with pytest.raises(MageflowValidationError, match=meant) as info:
        await mageflow.asign("t", **{typo: [cb]})
    assert info.value.field == typo
    with pytest.raises(MageflowValidationError, match=meant):
        await mageflow.achain([cb.key, "x"], **{typo: 1})
    with pytest.raises(MageflowValidationError, match=meant):
        await mageflow.aswarm(**{typo: 1})
    assert await raw.snapshot() == before


async def test_a_kwarg_named_like_an_option_is_bound_through_kwargs() -> None:
    sig = await mageflow.asign("t", kwargs={"sucess_callbacks": 1}, keys=[1], ids=2)
    assert sig.kwargs == {"sucess_callbacks": 1, "keys": [1], "ids": 2}


async def test_signature_valued_kwarg_is_refused(raw: Raw) -> None:
    cb = await mageflow.asign("cb")
    before = await raw.snapshot()
    for call in (
        lambda: mageflow.asign("t", notify=cb),
        lambda: mageflow.asign("t", kwargs={"notify": [cb]}),
        lambda: mageflow.achain(["a", "b"], notify=cb),
        lambda: mageflow.aswarm(notify={"x": cb}),
    ):
        with pytest.raises(MageflowValidationError, match="success_callbacks") as info:
            await call()
        assert info.value.field == "kwargs.notify"
    assert await raw.snapshot() == before
    bound = await mageflow.asign("t", notify=cb.key)  # its key is fine
    assert bound.kwargs == {"notify": cb.key}


async def test_swarm_config_zero_raises_mageflow_validation_error() -> None:
    with pytest.raises(MageflowValidationError) as info:
        await mageflow.aswarm(config=SwarmConfig(max_concurrency=0))
    assert info.value.field == "max_concurrency"


async def test_remove_of_a_missing_key_raises_like_pause() -> None:
    with pytest.raises(mageflow.SignatureNotFoundError):
        await mageflow.remove("task-never-stored")
    sig = await mageflow.asign("t")
    await sig.remove()
    with pytest.raises(mageflow.SignatureNotFoundError):
        await sig.remove()


async def _only_swarm_keys(raw: Raw, before: dict[str, Any]) -> dict[str, Any]:
    after = await raw.snapshot()
    return {k: v for k, v in after.items() if k not in before}


async def test_refused_swarm_adds_leave_no_orphans(raw: Raw) -> None:
    closed = await mageflow.aswarm(is_swarm_closed=True)
    full = await mageflow.aswarm(config=SwarmConfig(max_task_allowed=1), tasks=["one"])
    open_swarm = await mageflow.aswarm()
    unsaved = TaskSignature(task_name="built-elsewhere")
    before = await raw.snapshot()

    with pytest.raises(SwarmClosedError):
        await closed.aio_run_in_swarm(["a", "b", unsaved])
    with pytest.raises(SwarmFullError):
        await full.aio_run_in_swarm(["a", "b"])
    with pytest.raises(MageflowValidationError) as mismatch:
        await open_swarm.aio_run_tasks_in_swarm(["a", "b", "c"], [{"x": 1}])
    assert mismatch.value.field == "msgs"
    assert await raw.snapshot() == before
    assert await mageflow.load_signature(unsaved.key) is None


async def test_refused_chain_leaves_no_member_signatures(raw: Raw) -> None:
    before = await raw.snapshot()
    with pytest.raises(mageflow.SignatureNotFoundError):
        await mageflow.achain(["a", "b"], success=["task-not-stored"])
    assert await raw.snapshot() == before
