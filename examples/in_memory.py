"""The order pipeline in one process, no engine: ``InMemoryTaskManager`` + bundled valkey.

    uv run python examples/in_memory.py

Same signatures, callbacks and lifecycle as ``order_pipeline.py``; the task
bodies run as asyncio tasks of this process (with retries), so it finishes in
seconds. ``REDIS_URL`` selects another Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from datetime import timedelta

import mageflow
import redis.asyncio as aioredis
from demo_support import SetupError, local_redis, report
from live_view import LiveView
from mageflow import MageflowConfig
from mageflow.inmemory import InMemoryTaskManager
from orders import (
    AlertOps,
    CardDeclinedError,
    ChargeOrder,
    Journal,
    OrderTasks,
    RefundOrder,
    SendReceipt,
    run_pipeline,
)


async def amain(redis_url: str, deadline: float, view: LiveView) -> int:
    prefix = f"mageflow-demo:{uuid.uuid4().hex[:8]}:"
    redis = aioredis.from_url(redis_url, decode_responses=True)
    manager = InMemoryTaskManager()
    mageflow.configure(
        redis,
        manager,
        MageflowConfig(
            key_prefix=prefix, active_ttl=timedelta(hours=1), done_ttl=timedelta(hours=1)
        ),
    )
    journal = Journal(redis, f"{prefix}journal")
    tasks = OrderTasks(journal, work_seconds=0.3)

    # a declined card is final: no retry, the error callbacks fire at once
    manager.task(
        "charge-order",
        input_validator=ChargeOrder,
        retries=2,
        non_retryable=(CardDeclinedError,),
    )(tasks.charge_order)
    manager.task("send-receipt", input_validator=SendReceipt)(tasks.send_receipt)
    manager.task("refund-order", input_validator=RefundOrder)(tasks.refund_order)
    manager.task("alert-ops", input_validator=AlertOps)(tasks.alert_ops)

    try:
        result = await run_pipeline(journal, deadline=deadline, hold_seconds=1.0, view=view)
        await manager.wait_idle()
    finally:
        await redis.aclose()
    return report(view, result)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deadline", type=float, default=30.0, help="seconds (default 30)")
    args = parser.parse_args(argv)
    view = LiveView()
    try:
        with local_redis() as (url, where):
            view.print(f"Redis: {where} at {url}")
            view.print("Engine: none, tasks run in this process (mageflow.inmemory)\n")
            return asyncio.run(amain(url, args.deadline, view))
    except SetupError as exc:
        print(f"cannot run the demo: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
