"""A service with only ``thirdmagic`` installed builds a flow and hands it over.

No Redis, no engine, no ``mageflow`` import: the handler returns the flow as
JSON (e.g. the body of an HTTP response or a queue message), and a process
running MageFlow stores and runs it (docs/examples/handover.py).

Used by docs/containers.md; run by tests/integration/test_docs_examples.py.
"""

from __future__ import annotations

from pydantic import BaseModel
from thirdmagic import (
    ChainSignature,
    FlowSpec,
    ReturnValue,
    SwarmConfig,
    SwarmSignature,
    TaskSignature,
)


class Charge(BaseModel):
    order_id: int
    amount: float


class Ship(BaseModel):
    charged: ReturnValue[dict[str, float]]  # what "charge" returned
    carrier: str


class Notify(BaseModel):
    channel: str
    order_id: int


def checkout_handler(order_id: int, amount: float) -> str:
    """Build charge -> ship, then notify on two channels in parallel; return the flow."""
    notify = SwarmSignature(
        tasks=[
            TaskSignature(task_name="notify", kwargs={"channel": c, "order_id": order_id})
            for c in ("email", "sms")
        ],
        config=SwarmConfig(max_concurrency=2),
        is_swarm_closed=True,
    )
    refund = TaskSignature(task_name="refund", kwargs={"order_id": order_id})
    flow = ChainSignature(
        tasks=[
            TaskSignature(task_name="charge", model_validators=Charge),
            TaskSignature(task_name="ship", kwargs={"carrier": "ups"}, model_validators=Ship),
        ],
        success_callbacks=[notify],
        error_callbacks=[refund],
    )
    return FlowSpec.of(flow).to_json()  # plain JSON: models travel as import paths
