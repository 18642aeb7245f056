"""User code written from the docs: passes ``mypy --strict`` and pyright, no casts or ignores.

Never run; type-checked by ``tests/unit/test_typing.py`` (and ``.ci/run``).
Each ``assert_type`` pins what a user's editor shows for the documented calls.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, assert_type

import mageflow
from hatchet_sdk import Context, EmptyModel, Hatchet
from hatchet_sdk.exceptions import NonRetryableException
from hatchet_sdk.runnables.workflow import Standalone
from mageflow import (
    AcceptParams,
    ChainSignature,
    Mageflow,
    MageflowConfig,
    NonRetryable,
    ReturnValue,
    Signature,
    SignatureStatus,
    SwarmConfig,
    SwarmSignature,
    TaskSignature,
)
from mageflow_hatchet import HatchetMageflow
from pydantic import BaseModel

mf = Mageflow(Hatchet(), redis_client="redis://localhost:6379/0")
assert_type(mf, HatchetMageflow)


class Payment(BaseModel):
    order_id: int
    amount: float


class Charged(BaseModel):
    order_id: int
    charged: float


class Receipt(BaseModel):
    payment: ReturnValue[Charged]
    email: str


@mf.task(name="process-payment", input_validator=Payment, retries=2)
async def process_payment(msg: Payment) -> Charged:
    if msg.amount <= 0:
        raise NonRetryableException(f"nothing to charge for order {msg.order_id}")
    if msg.amount > 10_000:
        raise NonRetryable("over the limit")
    return Charged(order_id=msg.order_id, charged=msg.amount)


assert_type(process_payment, Standalone[Payment, Charged])


@mf.task(name="email-receipt", input_validator=Receipt)
async def email_receipt(msg: Receipt) -> dict[str, Any]:
    return {"sent_to": msg.email}


assert_type(email_receipt, Standalone[Receipt, dict[str, Any]])


@mf.task(name="count-things")
async def count_things(msg: EmptyModel) -> int:
    # Hatchet takes objects only: MageFlow wraps the int as {"mageflow_results": 1}
    return 1


assert_type(count_things, Standalone[EmptyModel, dict[str, Any]])


@mf.task(name="report-with-ctx", input_validator=Payment)
@mf.with_ctx
async def report_with_ctx(msg: Payment, ctx: Context) -> dict[str, Any]:
    return {"attempt": ctx.attempt_number}


@mf.task(name="report-with-signature", input_validator=Payment)
@mf.with_signature
async def report_with_signature(msg: Payment, signature: TaskSignature | None) -> None:
    if signature is not None:
        await signature.kwargs.aupdate(seen=True)


@mf.task(name="export", input_validator=Payment, execution_timeout=timedelta(seconds=30))
@mf.with_ctx
@mf.with_signature
@mf.stagger_execution(wait_delta=timedelta(seconds=2))
async def export(msg: Payment, ctx: Context, signature: TaskSignature | None) -> None:
    return None


assert_type(export, Standalone[Payment, None])


@mf.durable_task(name="archive", input_validator=Payment)
async def archive(msg: Payment) -> dict[str, Any]:
    return {"archived": msg.order_id}


assert_type(archive, Standalone[Payment, dict[str, Any]])


def needs_hatchet(client: Hatchet) -> str:
    return client.namespace


needs_hatchet(mf)  # a Mageflow client is a Hatchet client


async def flows() -> None:
    receipt = await mageflow.asign(email_receipt, email="ada@example.com")
    assert_type(receipt, TaskSignature)
    payment = await mageflow.asign(process_payment, success_callbacks=[receipt])
    await payment.aio_run_no_wait(Payment(order_id=1, amount=9.5))
    await payment.kwargs.aupdate({"note": "rush"}, priority=2)
    await payment.suspend()
    await payment.resume()
    await mageflow.pause(payment.key)
    await mageflow.resume(payment.key)

    loaded = await mageflow.load_signature(payment.key)
    assert_type(loaded, Signature | None)
    if loaded is not None and loaded.status is SignatureStatus.DONE:
        print(loaded.task_name)

    async with mageflow.lock_task(payment.key, wait=2.0) as locked:
        assert_type(locked, Signature)
        await locked.kwargs.aupdate(locked_by="me")

    chain = await mageflow.achain([process_payment, email_receipt])
    assert_type(chain, ChainSignature)
    swarm = await mageflow.aswarm(
        [process_payment, process_payment], config=SwarmConfig(max_concurrency=2)
    )
    assert_type(swarm, SwarmSignature)
    await swarm.aio_run_no_wait(Payment(order_id=2, amount=1.0))

    also = await mf.asign("email-receipt", email="bob@example.com")
    assert_type(also, TaskSignature)


def worker() -> None:
    mf.worker("typing-worker", slots=4, workflows=[process_payment, email_receipt]).start()


def other_client() -> None:
    config = MageflowConfig(key_prefix="other:")
    second = Mageflow(
        Hatchet(),
        redis_client="redis://localhost:6379/1",
        param_config=AcceptParams.ALL,
        config=config,
    )
    with second.runtime.activate():
        pass
