"""Big flows: bulk signing, large swarms and payloads by reference (in memory).

    uv run python docs/examples/big_flows.py      # REDIS_URL, else bundled valkey

Used by docs/big-flows.md; run by tests/integration/test_docs_examples.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import mageflow
import redis.asyncio as aioredis
from mageflow import BulkValidationError, ReturnValue, SwarmConfig, SwarmResults
from mageflow.inmemory import InMemoryTaskManager
from pydantic import BaseModel

manager = InMemoryTaskManager()
seen: dict[str, Any] = {}


class Invoice(BaseModel):
    invoice_id: int
    currency: str = "EUR"


class Totals(BaseModel):
    totals: ReturnValue[list[int]]  # the whole list, read on the worker in chunks


class Streamed(BaseModel):
    totals: ReturnValue[SwarmResults]  # one chunk at a time


class Report(BaseModel):
    pdf: str  # a big input: it travels by reference


@manager.task("bill", input_validator=Invoice)
async def bill(msg: Invoice) -> int:
    return msg.invoice_id * 10


@manager.task("sum-totals", input_validator=Totals)
async def sum_totals(msg: Totals) -> None:
    seen["sum"] = sum(msg.totals)


@manager.task("stream-totals", input_validator=Streamed)
async def stream_totals(msg: Streamed) -> None:
    total = 0
    async for value in msg.totals.aiter():
        total += value or 0  # None: a member that failed
    seen["streamed"] = total


@manager.task("render", input_validator=Report)
async def render(msg: Report) -> dict[str, int]:
    return {"pages": len(msg.pdf) // 3000}


async def bulk() -> None:
    invoices = await mageflow.asign_many("bill", [{"invoice_id": i} for i in range(5000)])
    assert len(invoices) == 5000
    try:
        await mageflow.asign_many("bill", [{"invoice_id": 1}, {"invoice_id": "two"}])
    except BulkValidationError as exc:
        assert exc.errors[0][:2] == (1, "invoice_id")  # index and field; nothing stored


async def big_swarm() -> None:
    summed = await mageflow.asign("sum-totals")
    streamed = await mageflow.asign("stream-totals")
    swarm = await mageflow.aswarm(
        success_callbacks=[summed, streamed], config=SwarmConfig(max_concurrency=20)
    )
    invoices = [Invoice(invoice_id=i) for i in range(3000)]
    await swarm.aio_run_tasks_in_swarm(["bill"] * 3000, invoices)
    await swarm.aio_run_no_wait()
    await swarm.close_swarm()
    await manager.wait_idle(timeout=120)
    assert seen["sum"] == seen["streamed"] == sum(i * 10 for i in range(3000))


async def big_payload() -> None:
    report = await mageflow.asign("render")
    await report.aio_run_no_wait(Report(pdf="%" * 3_000_000))  # 3 MB: stored in Redis
    await manager.wait_idle()
    (run,) = [r for r in manager.runs.values() if r.signature_key == report.key]
    assert len(str(run.input)) < 200  # what the engine carried: a reference


async def main(redis_url: str) -> None:
    seen.clear()
    async with aioredis.from_url(redis_url, decode_responses=True) as redis:
        mageflow.configure(redis, manager)
        await bulk()
        await big_swarm()
        await big_payload()
    print("big_flows: ok")


if __name__ == "__main__":
    from _support import redis_url

    with redis_url() as url:
        asyncio.run(main(url))
