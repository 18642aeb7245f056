"""Issue 11.6: signatures built with thirdmagic alone are stored and run by MageFlow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import mageflow
import pytest
from mageflow import (
    ChainSignature,
    MageflowValidationError,
    SignatureNotFoundError,
    SignatureStatus,
    SwarmSignature,
    TaskSignature,
)
from mageflow.inmemory import InMemoryTaskManager
from thirdmagic import FlowSpec

from tests.integration._helpers import Raw
from tests.integration.models import OrderMsg

pytestmark = pytest.mark.usefixtures("runtime")
ROOT = Path(__file__).resolve().parents[2]


def test_the_service_side_needs_only_thirdmagic() -> None:
    code = (
        "import sys; sys.path.insert(0, 'docs/examples'); import json;"
        "from handover_service import checkout_handler;"
        "body = checkout_handler(1, 2.0); json.loads(body);"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('mageflow', 'mageflow_hatchet', 'redis', 'hatchet_sdk')];"
        "assert not bad, bad; print('ok')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def _record(manager: InMemoryTaskManager, seen: list[Any], *names: str) -> None:
    for name in names:

        @manager.task(name)
        async def body(msg: Any, _name: str = name) -> str:
            seen.append(_name)
            return _name


async def test_submit_json_of_a_thirdmagic_flow_stores_and_runs_it(
    manager: InMemoryTaskManager,
) -> None:
    seen: list[Any] = []
    _record(manager, seen, "a", "b", "m1", "m2", "ok", "err")
    ok = TaskSignature(task_name="ok")
    swarm = SwarmSignature(
        tasks=[TaskSignature(task_name="m1"), TaskSignature(task_name="m2")],
        is_swarm_closed=True,
        success_callbacks=[ok],
    )
    chain = ChainSignature(
        tasks=[TaskSignature(task_name="a"), TaskSignature(task_name="b")],
        success_callbacks=[swarm],
        error_callbacks=[TaskSignature(task_name="err")],
    )
    body = FlowSpec.of(chain).to_json()
    assert json.loads(body)["root"] == chain.key
    root = await mageflow.submit(body)
    assert root.key == chain.key and isinstance(root, ChainSignature)
    await root.aio_run_no_wait({})
    await manager.wait_idle()
    assert seen[:2] == ["a", "b"] and sorted(seen[2:4]) == ["m1", "m2"] and seen[4] == "ok"
    for key in (chain.key, swarm.key, ok.key):
        loaded = await mageflow.load_signature(key)
        assert loaded is not None and loaded.status is SignatureStatus.DONE


async def test_asign_achain_aswarm_accept_unsaved_signatures(
    manager: InMemoryTaskManager,
) -> None:
    seen: list[Any] = []
    _record(manager, seen, "a", "b", "c")
    cb = TaskSignature(task_name="c")
    single = await mageflow.asign(TaskSignature(task_name="a", success_callbacks=[cb]))
    assert await mageflow.load_signature(cb.key) is not None
    chain = await mageflow.achain([TaskSignature(task_name="a"), TaskSignature(task_name="b")])
    swarm = await mageflow.aswarm(tasks=[TaskSignature(task_name="b")], is_swarm_closed=True)
    for sig in (single, chain, swarm):
        await sig.aio_run_no_wait({})
    await manager.wait_idle()
    assert sorted(seen) == ["a", "a", "b", "b", "c"]


async def test_model_validators_travel_as_import_path(manager: InMemoryTaskManager) -> None:
    sig = TaskSignature(task_name="p", model_validators=OrderMsg)
    spec = FlowSpec.from_json(FlowSpec.of(sig).to_json())
    stored = await mageflow.submit(spec)
    loaded = await mageflow.load_signature(stored.key)
    assert loaded is not None and loaded.model_validators is OrderMsg
    with pytest.raises(MageflowValidationError) as info:
        await loaded.aio_run_no_wait({"order_id": "not a number"})
    assert info.value.field == "order_id"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"root": "x", "signatures": [{"kind": "task"}]}, "signatures.0.task.task_name"),
        ({"root": "x", "signatures": [{"kind": "task", "task_name": "t"}]}, "root"),
        (
            {
                "root": "k",
                "signatures": [{"kind": "task", "task_name": "t", "key": "k", "kwargs": []}],
            },
            "signatures.0.task.kwargs",
        ),
        ({"root": "k", "signatures": []}, "signatures"),
        ({"root": "k", "signatures": [{"kind": "nope", "task_name": "t"}]}, "signatures.0"),
    ],
)
async def test_a_bad_spec_names_the_field(raw: Raw, spec: dict[str, Any], field: str) -> None:
    for given in (spec, json.dumps(spec)):
        with pytest.raises(MageflowValidationError) as info:
            await mageflow.submit(given)
        assert info.value.field == field
    assert await raw.snapshot() == {}


async def test_a_refused_spec_leaves_nothing_behind(raw: Raw) -> None:
    cb = TaskSignature(task_name="cb", success_callbacks=["task-not-stored"])
    chain = ChainSignature(
        tasks=[TaskSignature(task_name="a"), TaskSignature(task_name="b")], error_callbacks=[cb]
    )
    with pytest.raises(SignatureNotFoundError):
        await mageflow.submit(chain)
    terminal = TaskSignature(task_name="t", task_status={"status": "done"})
    with pytest.raises(MageflowValidationError) as info:
        await mageflow.submit(ChainSignature(tasks=[TaskSignature(task_name="a"), terminal]))
    assert info.value.field == "task_status"
    assert await raw.snapshot() == {}
    fine = TaskSignature(task_name="again")
    await mageflow.submit(fine)
    with pytest.raises(MageflowValidationError, match="already stored") as again:
        await mageflow.submit(fine)  # the same spec twice: refused, not stored twice
    assert again.value.field == "key"
