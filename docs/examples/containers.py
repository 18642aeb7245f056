"""Chains and swarms, nesting and lifecycle over containers (in memory).

    uv run python docs/examples/containers.py      # REDIS_URL, else bundled valkey

Used by docs/containers.md; run by tests/integration/test_docs_examples.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import mageflow
import redis.asyncio as aioredis
from mageflow import ReturnValue, SignatureStatus, SwarmConfig
from mageflow.inmemory import InMemoryTaskManager
from pydantic import BaseModel

manager = InMemoryTaskManager()
seen: dict[str, list[Any]] = {}


class Order(BaseModel):
    order_id: int
    shop: str = ""


class Step(BaseModel):
    previous: ReturnValue[dict[str, Any]]
    shop: str = ""
    carrier: str = ""


class Done(BaseModel):
    mageflow_results: Any = None


class Image(BaseModel):
    bucket: str
    quality: int = 0


@manager.task("reserve-stock", input_validator=Order)
async def reserve_stock(msg: Order) -> dict[str, Any]:
    return {"order_id": msg.order_id, "reserved": True, "shop": msg.shop}


@manager.task("charge-payment", input_validator=Step)
async def charge_payment(msg: Step) -> dict[str, Any]:
    return {**msg.previous, "charged": True}


@manager.task("ship", input_validator=Step)
async def ship(msg: Step) -> dict[str, Any]:
    return {**msg.previous, "carrier": msg.carrier}


@manager.task("notify-done", input_validator=Done)
async def notify_done(msg: Done) -> None:
    seen.setdefault("notify-done", []).append(msg.mageflow_results)


@manager.task("resize-image", input_validator=Image)
async def resize_image(msg: Image) -> str:
    return f"{msg.bucket}@{msg.quality}"


async def chains() -> None:
    notify = await mageflow.asign("notify-done")
    chain = await mageflow.achain(
        ["reserve-stock", charge_payment, await mageflow.asign("ship", carrier="ups")],
        name="order-flow",
        success=[notify],
        shop="eu-1",  # chain kwargs reach every step
    )
    await chain.aio_run_no_wait(Order(order_id=7))
    await manager.wait_idle()
    assert seen["notify-done"][-1] == {
        "order_id": 7,
        "reserved": True,
        "shop": "eu-1",
        "charged": True,
        "carrier": "ups",
    }


async def swarms() -> None:
    publish = await mageflow.asign("notify-done")
    swarm = await mageflow.aswarm(
        tasks=["resize-image"] * 3,
        success_callbacks=[publish],
        config=SwarmConfig(max_concurrency=10, stop_after_n_failures=2, max_task_allowed=500),
        quality=80,  # swarm kwargs reach every member
    )
    await swarm.aio_run_no_wait(Image(bucket="raw"))  # start: members get this message
    await swarm.aio_run_in_swarm("resize-image", Image(bucket="late"))  # add while running
    await swarm.aio_run_tasks_in_swarm(["resize-image"] * 2, [Image(bucket="a"), Image(bucket="b")])
    await swarm.close_swarm()  # no more members; completes when the last one ends
    await manager.wait_idle()
    assert seen["notify-done"][-1] == ["raw@80"] * 3 + ["late@80", "a@80", "b@80"]


async def lifecycle() -> None:
    swarm = await mageflow.aswarm(tasks=["resize-image"] * 2, is_swarm_closed=True)
    await swarm.suspend()  # the swarm and every member
    await swarm.aio_run_no_wait(Image(bucket="held"))
    await manager.wait_idle()
    assert (await mageflow.load_signature(swarm.key)).status is SignatureStatus.SUSPENDED
    await swarm.resume()  # members resume, then the swarm starts what it parked
    await manager.wait_idle()
    assert (await mageflow.load_signature(swarm.key)).status is SignatureStatus.DONE


async def main(redis_url: str) -> None:
    seen.clear()
    async with aioredis.from_url(redis_url, decode_responses=True) as redis:
        mageflow.configure(redis, manager)
        await chains()
        await swarms()
        await lifecycle()
    print("containers: ok")


if __name__ == "__main__":
    from _support import redis_url

    with redis_url() as url:
        asyncio.run(main(url))
