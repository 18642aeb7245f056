"""Callbacks: ReturnValue injection, error callbacks, retries and merge order (in memory).

    uv run python docs/examples/callbacks.py      # REDIS_URL, else bundled valkey

Used by docs/callbacks.md; run by tests/integration/test_docs_examples.py.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import mageflow
import redis.asyncio as aioredis
from mageflow import MageflowValidationError, ReturnValue, SignatureStatus
from mageflow.inmemory import InMemoryTaskManager, NonRetryableError
from pydantic import BaseModel

manager = InMemoryTaskManager()
received: dict[str, list[Any]] = {}


def record(task: str, msg: Any) -> None:
    received.setdefault(task, []).append(msg)


# -- the parent task -------------------------------------------------------------------


class Order(BaseModel):
    order_id: int
    amount: float
    note: str = ""


class ChargeResult(BaseModel):
    order_id: int
    total: float


@manager.task("charge", input_validator=Order)
async def charge(msg: Order) -> ChargeResult:
    return ChargeResult(order_id=msg.order_id, total=msg.amount * 1.2)


# -- success callbacks: four ways to receive the return value ------------------------------


class Receipt(BaseModel):
    charge: ReturnValue[ChargeResult]  # short form
    email: str  # a kwarg bound to this callback


class Ledger(BaseModel):
    entry: Annotated[ChargeResult, ReturnValue()]  # explicit form, fully typed
    book: str


class Audit(BaseModel):
    mageflow_results: ChargeResult  # no marked field: the default name
    source: str = "charge"


class LegacyAudit(BaseModel):
    results: ChargeResult  # older code: used when there is no mageflow_results


@manager.task("send-receipt", input_validator=Receipt)
async def send_receipt(msg: Receipt) -> None:
    record("send-receipt", msg)


@manager.task("post-ledger", input_validator=Ledger)
async def post_ledger(msg: Ledger) -> None:
    record("post-ledger", msg)


@manager.task("audit", input_validator=Audit)
async def audit(msg: Audit) -> None:
    record("audit", msg)


@manager.task("legacy-audit", input_validator=LegacyAudit)
async def legacy_audit(msg: LegacyAudit) -> None:
    record("legacy-audit", msg)


async def success_callbacks() -> None:
    receipt = await mageflow.asign("send-receipt", email="ada@example.com")
    ledger = await mageflow.asign(post_ledger, book="sales")
    audit_cb = await mageflow.asign("audit")
    legacy = await mageflow.asign("legacy-audit")
    sig = await mageflow.asign("charge", success_callbacks=[receipt, ledger, audit_cb, legacy])
    await sig.aio_run_no_wait(Order(order_id=1, amount=10.0))
    await manager.wait_idle()

    result = ChargeResult(order_id=1, total=12.0)
    assert received["send-receipt"] == [Receipt(charge=result, email="ada@example.com")]
    assert received["post-ledger"] == [Ledger(entry=result, book="sales")]
    assert received["audit"] == [Audit(mageflow_results=result)]
    assert received["legacy-audit"] == [LegacyAudit(results=result)]


# -- error callbacks: the original message plus the callback's own kwargs ------------------


class Shipment(BaseModel):
    order_id: int
    address: str


class ShipmentFailed(Shipment):  # the failed task's input ...
    reason: str  # ... plus what is bound to the callback
    team: str = "logistics"


attempts: dict[int, int] = {}


@manager.task("ship", input_validator=Shipment, retries=2)
async def ship(msg: Shipment) -> str:
    attempts[msg.order_id] = attempts.get(msg.order_id, 0) + 1
    if msg.address == "nowhere":
        raise NonRetryableError("no such address")  # final at once: no retry
    if msg.order_id == 3 and attempts[msg.order_id] < 3:
        raise ConnectionError("carrier API timed out")  # retried
    if msg.order_id == 2:
        raise ConnectionError("carrier API is down")  # retried, fails every time
    return "shipped"


@manager.task("on-ship-failed", input_validator=ShipmentFailed)
async def on_ship_failed(msg: ShipmentFailed) -> None:
    record("on-ship-failed", msg)


@manager.task("on-shipped")
async def on_shipped(msg: dict[str, Any]) -> None:
    record("on-shipped", msg)  # no model: a dict with the result in "mageflow_results"


async def error_callbacks() -> None:
    async def run(order_id: int, address: str) -> tuple[str, str]:
        ok = await mageflow.asign("on-shipped")
        failed = await mageflow.asign("on-ship-failed", reason="shipping failed")
        sig = await mageflow.asign("ship", success_callbacks=[ok], error_callbacks=[failed])
        await sig.aio_run_no_wait(Shipment(order_id=order_id, address=address))
        await manager.wait_idle()
        return sig.key, failed.key

    # fails on all 3 attempts: the error callback fires once, after the last one
    key, _ = await run(2, "Main St 1")
    assert attempts[2] == 3
    assert received["on-ship-failed"] == [
        ShipmentFailed(order_id=2, address="Main St 1", reason="shipping failed")
    ]
    loaded = await mageflow.load_signature(key)
    assert loaded is not None and loaded.status is SignatureStatus.FAILED

    # NonRetryableError ends the attempts at once
    await run(4, "nowhere")
    assert attempts[4] == 1
    assert len(received["on-ship-failed"]) == 2

    # fails twice, succeeds on the third attempt: only the success callback fires
    await run(3, "Main St 3")
    assert attempts[3] == 3
    assert len(received["on-ship-failed"]) == 2
    assert received["on-shipped"] == [{"mageflow_results": "shipped"}]


# -- merge order ----------------------------------------------------------------------------


class Note(BaseModel):
    note: str
    mageflow_results: Any = None


@manager.task("annotate", input_validator=Note)
async def annotate(msg: Note) -> None:
    record("annotate", msg)


async def merge_order() -> None:
    # task input = message, then bound kwargs on top: the bound kwarg wins
    sig = await mageflow.asign("charge", note="bound")
    await sig.aio_run_no_wait(Order(order_id=5, amount=1.0, note="from message"))
    await manager.wait_idle()
    (run,) = [r for r in manager.runs.values() if r.signature_key == sig.key]
    assert run.input["note"] == "bound"

    # success callback = its bound kwargs, then the return value (the result wins)
    cb = await mageflow.asign("annotate", note="bound", mageflow_results="bound")
    sig = await mageflow.asign("charge", success_callbacks=[cb])
    await sig.aio_run_no_wait(Order(order_id=6, amount=1.0))
    await manager.wait_idle()
    assert received["annotate"][-1].mageflow_results == {"order_id": 6, "total": 1.2}


# -- a model may mark only one field ------------------------------------------------------------


class TwoMarked(BaseModel):
    first: ReturnValue[int]
    second: ReturnValue[int]


@manager.task("two-marked", input_validator=TwoMarked)
async def two_marked(msg: TwoMarked) -> None:
    return None


async def two_marked_fields_is_an_error() -> None:
    try:
        await mageflow.asign(two_marked)
    except MageflowValidationError as exc:
        assert "'first'" in str(exc) and "'second'" in str(exc)
    else:
        raise AssertionError("two ReturnValue fields are rejected when signing")


async def main(redis_url: str) -> None:
    received.clear()
    attempts.clear()
    async with aioredis.from_url(redis_url, decode_responses=True) as redis:
        mageflow.configure(redis, manager)
        await success_callbacks()
        await error_callbacks()
        await merge_order()
        await two_marked_fields_is_an_error()
    print("callbacks: ok")


if __name__ == "__main__":
    from _support import redis_url

    with redis_url() as url:
        asyncio.run(main(url))
