"""Signature API tour, on the in-memory task manager (no engine needed).

    uv run python docs/examples/signatures.py      # REDIS_URL, else bundled valkey

Used by docs/api/signature.md; run by tests/integration/test_docs_examples.py.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import mageflow
import redis.asyncio as aioredis
from mageflow import (
    InvalidTransitionError,
    MageflowValidationError,
    PauseActionTypes,
    SignatureNotFoundError,
    SignatureStatus,
    TaskSignature,
)
from mageflow.inmemory import InMemoryTaskManager
from pydantic import BaseModel

manager = InMemoryTaskManager()


class ProcessOrder(BaseModel):
    order_id: int
    priority: str = "normal"
    warehouse: str = "main"


@manager.task("process-order", input_validator=ProcessOrder)
async def process_order(msg: ProcessOrder) -> dict[str, object]:
    return {"order_id": msg.order_id, "priority": msg.priority, "warehouse": msg.warehouse}


@manager.task("notify")
async def notify(msg: dict[str, object]) -> None:
    return None


async def create_signatures() -> TaskSignature:
    # by task name, or by the task object; any keyword that is not a
    # signature option is bound as a kwarg of the task
    by_name = await mageflow.asign("process-order", priority="high")
    by_object = await mageflow.sign(process_order, kwargs={"priority": "low"})
    assert by_name.kwargs == {"priority": "high"}
    assert by_object.kwargs == {"priority": "low"}

    # every option at once
    on_done = await mageflow.asign("notify", channel="email")
    on_error = await mageflow.asign("notify", channel="pager")
    sig = await mageflow.asign(
        "process-order",
        key=f"order-42-{uuid.uuid4().hex[:8]}",  # default: "task-<uuid hex>"
        kwargs={"warehouse": "berlin"},
        priority="high",  # merged into kwargs
        creation_time=datetime(2025, 1, 1, tzinfo=UTC),
        model_validators=ProcessOrder,  # stored as an import path
        success_callbacks=[on_done],  # signatures or keys
        error_callbacks=[on_error.key],
        task_identifiers={"order_id": 42},
        task_status=SignatureStatus.PENDING,
    )
    assert sig.key == sig.id and sig.key.startswith("order-42-")
    assert sig.kwargs == {"warehouse": "berlin", "priority": "high"}
    assert sig.model_validators is ProcessOrder  # the class; the stored path is beside it
    assert sig.model_validators_path == f"{ProcessOrder.__module__}:ProcessOrder"
    assert sig.success_callbacks == [on_done.key]
    assert sig.error_callbacks == [on_error.key]
    assert sig.status is SignatureStatus.PENDING
    return sig


async def load_update_and_run(sig: TaskSignature) -> None:
    loaded = await mageflow.load_signature(sig.key)
    assert loaded is not None and loaded.task_identifiers == {"order_id": 42}
    assert await mageflow.load_signature("no-such-key") is None

    # atomic partial update of the bound kwargs, persisted at once
    await sig.kwargs.aupdate(warehouse="hamburg")
    loaded = await mageflow.load_signature(sig.key)
    assert loaded is not None and loaded.kwargs["warehouse"] == "hamburg"

    # more callbacks after creation
    audit = await mageflow.asign("notify", channel="audit")
    await sig.add_callbacks(success=[audit])

    # the message is validated against the task's model before dispatch
    try:
        await sig.aio_run_no_wait({"order_id": "not a number"})
    except MageflowValidationError as exc:
        assert exc.field == "order_id"  # nothing was dispatched
    else:
        raise AssertionError("a message that does not fit is rejected")

    # message first, bound kwargs on top: priority stays "high"
    await sig.aio_run_no_wait(ProcessOrder(order_id=42, priority="low"))
    await manager.wait_idle()
    done = await mageflow.load_signature(sig.key)
    assert done is not None and done.status is SignatureStatus.DONE
    (run,) = [r for r in manager.runs.values() if r.signature_key == sig.key]
    assert run.result == {"order_id": 42, "priority": "high", "warehouse": "hamburg"}

    # a finished signature cannot run again or be resumed
    try:
        await sig.aio_run_no_wait(ProcessOrder(order_id=42))
    except InvalidTransitionError as exc:
        assert exc.key == sig.key
    else:
        raise AssertionError("a done signature does not run again")


async def pause_resume_remove() -> None:
    sig = await mageflow.asign("process-order")
    await sig.suspend()  # or: await sig.pause_task(PauseActionTypes.SUSPEND)
    assert sig.status is SignatureStatus.SUSPENDED
    await sig.resume()  # back to the status it had before: pending
    assert sig.status is SignatureStatus.PENDING

    await mageflow.pause(sig.key)  # module-level, by key (SUSPEND by default)
    await mageflow.resume_task(sig.key)  # resume_task is resume
    await mageflow.pause(sig.key, PauseActionTypes.INTERRUPT)
    loaded = await mageflow.load_signature(sig.key)
    assert loaded is not None and loaded.status is SignatureStatus.INTERRUPTED

    # remove() deletes the signature and, by default, its callbacks (recursively)
    cb = await mageflow.asign("notify")
    parent = await mageflow.asign("process-order", success_callbacks=[cb])
    await parent.remove()
    assert await mageflow.load_signature(parent.key) is None
    assert await mageflow.load_signature(cb.key) is None

    # delete_signature(key) deletes only that signature
    cb = await mageflow.asign("notify")
    parent = await mageflow.asign("process-order", success_callbacks=[cb])
    await TaskSignature.delete_signature(parent.key)
    assert await mageflow.load_signature(cb.key) is not None
    await mageflow.remove(cb.key)  # module-level remove by key

    try:
        await mageflow.pause("no-such-key")
    except SignatureNotFoundError as exc:
        assert exc.key == "no-such-key"
    else:
        raise AssertionError("pausing a missing key raises")


async def main(redis_url: str) -> None:
    async with aioredis.from_url(redis_url, decode_responses=True) as redis:
        mageflow.configure(redis, manager)
        sig = await create_signatures()
        await load_update_and_run(sig)
        await pause_resume_remove()
        await sig.remove()
    print("signatures: ok")


if __name__ == "__main__":
    from _support import redis_url

    with redis_url() as url:
        asyncio.run(main(url))
