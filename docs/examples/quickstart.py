"""Quickstart: a Hatchet task with a success and an error callback.

Needs a Hatchet engine (the usual ``HATCHET_CLIENT_*`` variables) and Redis
(``REDIS_URL``). In one terminal serve the tasks, in another sign and run them:

    uv run python docs/examples/quickstart.py worker
    uv run python docs/examples/quickstart.py run

Used by docs/quickstart.md; run by tests/e2e/test_docs_examples.py.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import mageflow
from hatchet_sdk import Hatchet
from hatchet_sdk.exceptions import NonRetryableException
from mageflow import Mageflow, ReturnValue, SignatureFailedError
from pydantic import BaseModel

# 1. A Mageflow client wraps your Hatchet client and a Redis for the signatures.
mf = Mageflow(Hatchet(), redis_client=os.environ.get("REDIS_URL", "redis://localhost:6379/0"))


# 2. Messages are pydantic models.
class Payment(BaseModel):
    order_id: int
    amount: float


class Charged(BaseModel):
    order_id: int
    charged: float


class Receipt(BaseModel):
    payment: ReturnValue[Charged]  # process-payment's return value lands here
    email: str  # bound when the callback is signed


class PaymentFailed(Payment):  # the failed task's message ...
    reason: str  # ... plus the callback's own kwargs


# 3. Tasks are declared like Hatchet tasks.
@mf.task(name="process-payment", input_validator=Payment, retries=2)
async def process_payment(msg: Payment) -> Charged:
    if msg.amount <= 0:
        raise NonRetryableException(f"nothing to charge for order {msg.order_id}")
    return Charged(order_id=msg.order_id, charged=msg.amount)


@mf.task(name="email-receipt", input_validator=Receipt)
async def email_receipt(msg: Receipt) -> dict[str, Any]:
    print(f"receipt: order {msg.payment.order_id}, {msg.payment.charged:.2f} to {msg.email}")
    return {"sent_to": msg.email}


@mf.task(name="payment-failed", input_validator=PaymentFailed)
async def payment_failed(msg: PaymentFailed) -> None:
    print(f"order {msg.order_id} failed: {msg.reason}")


# 4. Sign the task with its callbacks, and run the signature.
async def run_order(order_id: int, amount: float) -> tuple[str, str, str]:
    receipt = await mageflow.asign(email_receipt, email="ada@example.com")
    failed = await mageflow.asign(payment_failed, reason="payment declined")
    payment = await mageflow.asign(
        process_payment, success_callbacks=[receipt], error_callbacks=[failed]
    )
    await payment.aio_run_no_wait(Payment(order_id=order_id, amount=amount))
    return payment.key, receipt.key, failed.key


async def main() -> None:
    # 5. Wait for outcomes: mageflow.result is woken when the worker records one.
    payment, receipt, failed = await run_order(1, 42.0)
    charged = await mageflow.result(payment, timeout=60)
    await mageflow.result(receipt, timeout=60)  # the success callback ran
    print(f"order 1: charged {charged['charged']:.2f}, receipt {receipt} done, {failed} never ran")

    payment, receipt, failed = await run_order(2, 0.0)
    try:
        await mageflow.result(payment, timeout=60)
    except SignatureFailedError as exc:
        assert exc.error is not None  # type, message and traceback of the failure
        print(f"order 2: {payment} failed ({exc.error.type}: {exc.error.message})")
    await mageflow.result(failed, timeout=60)
    print(f"order 2: error callback {failed} done")


def serve() -> None:
    worker = mf.worker(
        "quickstart-worker", workflows=[process_payment, email_receipt, payment_failed]
    )
    worker.start()


if __name__ == "__main__":
    if sys.argv[1:] == ["worker"]:
        serve()
    elif sys.argv[1:] == ["run"]:
        asyncio.run(main())
    else:
        sys.exit("usage: quickstart.py worker|run")
