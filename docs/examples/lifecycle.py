"""Lifecycle: parked runs, resume, interrupt, lock_task and TTLs (in memory).

    uv run python docs/examples/lifecycle.py      # REDIS_URL, else bundled valkey

Used by docs/lifecycle.md; run by tests/integration/test_docs_examples.py.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import mageflow
import redis.asyncio as aioredis
from mageflow import (
    InvalidTransitionError,
    MageflowConfig,
    SignatureLockedError,
    SignatureStatus,
)
from mageflow.inmemory import InMemoryTaskManager
from pydantic import BaseModel

manager = InMemoryTaskManager()


class Job(BaseModel):
    job_id: int
    seconds: float = 0.0


@manager.task("job", input_validator=Job)
async def job(msg: Job) -> dict[str, int]:
    await asyncio.sleep(msg.seconds)
    return {"job_id": msg.job_id}


@manager.task("after-job")
async def after_job(msg: dict[str, object]) -> None:
    return None


async def status(key: str) -> SignatureStatus | None:
    sig = await mageflow.load_signature(key)
    return sig.status if sig else None


async def until(key: str, wanted: SignatureStatus) -> None:
    async with asyncio.timeout(5):
        while True:
            if await status(key) == wanted:
                return
            await asyncio.sleep(0.02)


async def parked_run_is_replayed_once() -> None:
    callback = await mageflow.asign("after-job")
    sig = await mageflow.asign("job", success_callbacks=[callback])
    await sig.suspend()
    await sig.aio_run_no_wait(Job(job_id=1))  # parked: nothing reaches the engine
    await manager.wait_idle()
    assert manager.body_calls["job"] == 0
    assert await status(sig.key) is SignatureStatus.SUSPENDED

    await mageflow.resume(sig.key)  # back to pending, the parked run is dispatched
    await mageflow.resume(sig.key)  # repeating an event is a no-op
    await manager.wait_idle()
    assert manager.body_calls["job"] == 1  # exactly once, with the original message
    assert await status(sig.key) is SignatureStatus.DONE
    assert await status(callback.key) is SignatureStatus.DONE

    try:
        await mageflow.resume(sig.key)  # done is terminal
    except InvalidTransitionError as exc:
        assert exc.status == "done" and exc.event == "resume"
    else:
        raise AssertionError("resuming a done signature raises")


async def interrupt_cancels_the_run() -> None:
    callback = await mageflow.asign("after-job")
    sig = await mageflow.asign("job", success_callbacks=[callback])
    await sig.aio_run_no_wait(Job(job_id=2, seconds=30))
    await until(sig.key, SignatureStatus.ACTIVE)

    await sig.interrupt()  # cancels the engine run; no callback fires
    await manager.wait_idle()
    assert await status(sig.key) is SignatureStatus.INTERRUPTED
    assert await status(callback.key) is SignatureStatus.PENDING

    # resume dispatches the run again with the message it was started with;
    # kwargs bound meanwhile apply to it
    await sig.kwargs.aupdate(seconds=0)
    await sig.resume()
    await manager.wait_idle()
    assert await status(sig.key) is SignatureStatus.DONE
    assert await status(callback.key) is SignatureStatus.DONE


async def lock_task_holds_the_status() -> None:
    sig = await mageflow.asign("job")
    locked_in = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with mageflow.lock_task(sig.key) as locked:
            assert locked.key == sig.key  # the signature, read under the lock
            locked_in.set()
            await release.wait()

    held = asyncio.create_task(holder())
    await locked_in.wait()
    try:
        await mageflow.pause(sig.key)  # waits up to lock_wait, then gives up
    except SignatureLockedError as exc:
        assert exc.key == sig.key
    else:
        raise AssertionError("a locked signature keeps its status")
    assert await status(sig.key) is SignatureStatus.PENDING
    release.set()
    await held
    await mageflow.pause(sig.key)  # released: the change goes through
    assert await status(sig.key) is SignatureStatus.SUSPENDED


async def a_lock_outlives_lock_ttl() -> None:
    sig = await mageflow.asign("job")
    locked_in = asyncio.Event()

    async def holder() -> None:
        # the plain call form: await it for a held lock, release it when done
        held = await mageflow.lock_task(sig.key, wait=3)
        locked_in.set()
        await asyncio.sleep(1.5)  # longer than lock_ttl (1 s here): renewed meanwhile
        await held.release()

    holding = asyncio.create_task(holder())
    await locked_in.wait()
    await asyncio.sleep(1.1)  # past lock_ttl: the lock is still there
    try:
        await mageflow.pause(sig.key)
    except SignatureLockedError:
        pass
    else:
        raise AssertionError("a live holder's lock does not lapse")
    await holding
    async with mageflow.lock_task(sig.key):
        await mageflow.pause(sig.key)  # the lock holder may change the status
    assert await status(sig.key) is SignatureStatus.SUSPENDED


async def ttls(redis: aioredis.Redis, prefix: str) -> None:
    sig = await mageflow.asign("job")
    stored = f"{prefix}sig:{sig.key}"  # layout: packages/mageflow-core/.../_store/keys.py
    assert 0 < await redis.pttl(stored) <= 7 * 24 * 3600 * 1000  # active_ttl, slides
    await sig.aio_run_no_wait(Job(job_id=3))
    await manager.wait_idle()
    assert 0 < await redis.pttl(stored) <= 10 * 60 * 1000  # done_ttl once finished


async def main(redis_url: str) -> None:
    prefix = f"docs-lifecycle-{uuid.uuid4().hex[:6]}:"
    config = MageflowConfig(
        key_prefix=prefix,  # default "mageflow:"
        active_ttl=timedelta(days=7),  # slides on every transition
        done_ttl=timedelta(minutes=10),  # after done/failed/canceled (default 1 day)
        lock_ttl=timedelta(seconds=1),  # a crashed lock_task holder blocks at most this long
        lock_wait=timedelta(milliseconds=300),  # how long a caller waits for a lock
    )
    async with aioredis.from_url(redis_url, decode_responses=True) as redis:
        mageflow.configure(redis, manager, config)
        await parked_run_is_replayed_once()
        await interrupt_cancels_the_run()
        await lock_task_holds_the_status()
        await a_lock_outlives_lock_ttl()
        await ttls(redis, prefix)
    print("lifecycle: ok")


if __name__ == "__main__":
    from _support import redis_url

    with redis_url() as url:
        asyncio.run(main(url))
