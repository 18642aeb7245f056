"""A MageFlow worker process stores and runs a flow built by a thirdmagic-only service.

    uv run python docs/examples/handover.py      # REDIS_URL, else bundled valkey

Used by docs/containers.md; run by tests/integration/test_docs_examples.py.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path
from typing import Any

import mageflow
import redis.asyncio as aioredis
from mageflow import MageflowConfig, MageflowValidationError, SignatureStatus
from mageflow.inmemory import InMemoryTaskManager

sys.path.insert(0, str(Path(__file__).parent))
from handover_service import Charge, Notify, Ship, checkout_handler

manager = InMemoryTaskManager()
done: list[str] = []


@manager.task("charge", input_validator=Charge)
async def charge(msg: Charge) -> dict[str, float]:
    return {"order_id": msg.order_id, "charged": msg.amount}


@manager.task("ship", input_validator=Ship)
async def ship(msg: Ship) -> dict[str, Any]:
    return {"shipped": msg.charged["order_id"], "carrier": msg.carrier}


@manager.task("notify", input_validator=Notify)
async def notify(msg: Notify) -> None:
    done.append(f"notify {msg.channel} #{msg.order_id}")


@manager.task("refund")
async def refund(msg: Any) -> None:
    done.append("refund")


async def worker_side(body: str) -> None:
    flow = await mageflow.submit(body)  # stores every signature of the flow at once
    await flow.aio_run_no_wait({"order_id": 7, "amount": 12.5})
    await manager.wait_idle()
    stored = await mageflow.load_signature(flow.key)
    assert stored is not None and stored.status is SignatureStatus.DONE
    assert sorted(done) == ["notify email #7", "notify sms #7"]


async def bad_input_names_the_field() -> None:
    try:
        await mageflow.submit('{"root": "x", "signatures": [{"kind": "task"}]}')
    except MageflowValidationError as exc:
        assert exc.field == "signatures.0.task.task_name"
    else:
        raise AssertionError("a spec without a task name is refused")


async def main(redis_url: str) -> None:
    prefix = f"docs-handover-{uuid.uuid4().hex[:6]}:"
    async with aioredis.from_url(redis_url, decode_responses=True) as redis:
        mageflow.configure(redis, manager, MageflowConfig(key_prefix=prefix))
        body = checkout_handler(order_id=7, amount=12.5)  # in the thirdmagic-only service
        await worker_side(body)  # in the MageFlow process
        await bad_input_names_the_field()
    print("handover: ok")


if __name__ == "__main__":
    from _support import redis_url

    with redis_url() as url:
        asyncio.run(main(url))
