"""Outcomes and steering: result, error details, cancel, retry, clone, progress, queries.

    uv run python docs/examples/operations.py      # REDIS_URL, else bundled valkey

Used by docs/operations.md; run by tests/integration/test_docs_examples.py.
"""

from __future__ import annotations

import asyncio
import uuid

import mageflow
import redis.asyncio as aioredis
from mageflow import (
    ErrorDetails,
    ErrorInfo,
    MageflowConfig,
    NonRetryable,
    SignatureCanceledError,
    SignatureFailedError,
    SwarmConfig,
)
from mageflow.inmemory import InMemoryTaskManager
from pydantic import BaseModel

manager = InMemoryTaskManager()
attempts: dict[int, int] = {}
alerts: list[str] = []


class Resize(BaseModel):
    image_id: int


# An error callback marks one field with ErrorInfo to receive the failure's
# details; every other field is the failed task's message, as always.
class ResizeFailed(BaseModel):
    image_id: int
    error: ErrorInfo[ErrorDetails | None] = None


@manager.task("resize", input_validator=Resize)
async def resize(msg: Resize) -> str:
    attempts[msg.image_id] = attempts.get(msg.image_id, 0) + 1
    if msg.image_id == 13 and attempts[msg.image_id] == 1:
        raise NonRetryable("image 13 is corrupt")
    return f"thumb-{msg.image_id}.png"


@manager.task("alert", input_validator=ResizeFailed)
async def alert(msg: ResizeFailed) -> None:
    assert msg.error is not None
    alerts.append(f"image {msg.image_id}: {msg.error.type}: {msg.error.message}")


@manager.task("slow", input_validator=Resize)
async def slow(msg: Resize) -> None:
    await asyncio.sleep(60)


async def results_and_errors() -> None:
    # run and wait; no polling
    sig = await mageflow.asign("resize")
    thumb = await sig.aio_run(Resize(image_id=1), timeout=10)
    assert thumb == "thumb-1.png"

    # a failure raises with the stored details; the error callback got them too
    on_error = await mageflow.asign("alert")
    bad = await mageflow.asign("resize", error_callbacks=[on_error])
    try:
        await bad.aio_run(Resize(image_id=13), timeout=10)
    except SignatureFailedError as exc:
        assert exc.error is not None
        assert exc.error.message == "image 13 is corrupt"  # also .type, .traceback
    await mageflow.result(on_error.key, timeout=10)
    assert alerts == ["image 13: mageflow.engine.NonRetryable: image 13 is corrupt"]

    # retry: a new attempt of the same signature, with the input it received
    await mageflow.retry(bad.key)
    assert await bad.aio_result(timeout=10) == "thumb-13.png"


async def cancel_and_progress() -> None:
    sw = await mageflow.aswarm(config=SwarmConfig(max_concurrency=2), task_identifiers={"batch": 7})
    await sw.aio_run_tasks_in_swarm(["slow"] * 3, [Resize(image_id=i) for i in range(3)])
    await sw.close_swarm()
    await sw.aio_run_no_wait({})
    await asyncio.sleep(0.1)
    progress = await sw.progress()
    assert (progress.admitted, progress.running, progress.queued) == (3, 2, 1)

    # every swarm of batch 7, newest first
    found = await mageflow.list_signatures(identifiers={"batch": 7})
    assert [s.key for s in found] == [sw.key]

    await mageflow.cancel(sw.key)  # members too; their runs are cancelled
    try:
        await sw.aio_result(timeout=1)
    except SignatureCanceledError as exc:
        assert exc.status == "canceled"

    copy = await sw.clone()  # a fresh swarm with fresh copies of the members
    assert copy.key != sw.key and (await copy.progress()).admitted == 3
    await copy.remove()


async def main(redis_url: str) -> None:
    client = aioredis.from_url(redis_url, decode_responses=True)
    prefix = f"docs-ops:{uuid.uuid4().hex[:8]}:"
    runtime = mageflow.configure(client, manager, MageflowConfig(key_prefix=prefix))
    try:
        await results_and_errors()
        await cancel_and_progress()
        await manager.wait_idle(timeout=10)
    finally:
        await runtime.results.close()
        async for key in client.scan_iter(match=f"{prefix}*"):
            await client.delete(key)
        await client.aclose()
    print("operations: ok")


if __name__ == "__main__":
    from _support import redis_url

    with redis_url() as url:
        asyncio.run(main(url))
