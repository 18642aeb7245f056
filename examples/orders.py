"""The order pipeline shared by both demos: models, task bodies, and the driver.

Engine-independent: ``order_pipeline.py`` registers the task bodies on a real
Hatchet engine, ``in_memory.py`` on ``mageflow.inmemory.InMemoryTaskManager``.
Both then call :func:`run_pipeline`, which signs three orders, runs them and
watches every signature until it has settled.

Per order the pipeline is::

    charge-order ──success──▶ send-receipt   (gets the charge result via ReturnValue)
                 └─error────▶ refund-order   (gets the original order + reason)
                 └─error────▶ alert-ops      (gets the original order + channel, severity)

Order 1002 pays with a card that is declined, so its error callbacks fire.
Order 1003 is suspended before it is dispatched: its run is parked, shown in the
view, then resumed, and it completes exactly once.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import mageflow
import redis.asyncio as aioredis
from live_view import LiveView, Row
from mageflow import ReturnValue, SignatureStatus, TaskSignature
from pydantic import BaseModel

DECLINED_CARD = "0002"
HELD_ORDER = 1003


# -- messages ---------------------------------------------------------------------------


class ChargeOrder(BaseModel):
    """Input of charge-order: what the shop knows about the order."""

    order_id: int
    customer: str
    email: str
    amount_cents: int
    card_last4: str


class Charge(BaseModel):
    """What charge-order returns."""

    order_id: int
    charge_id: str
    amount_cents: int


class SendReceipt(BaseModel):
    charge: ReturnValue[Charge]  # charge-order's return value is injected here
    email: str  # bound when the callback is signed


class RefundOrder(ChargeOrder):
    """Error callback: the message charge-order received, plus its own kwargs."""

    reason: str


class AlertOps(ChargeOrder):
    channel: str
    severity: str


class CardDeclinedError(Exception):
    """The payment provider declined the card; retrying cannot help."""


ORDERS = [
    ChargeOrder(
        order_id=1001,
        customer="Ada Lovelace",
        email="ada@example.com",
        amount_cents=4200,
        card_last4="4242",
    ),
    ChargeOrder(
        order_id=1002,
        customer="Charles Babbage",
        email="charles@example.com",
        amount_cents=1999,
        card_last4=DECLINED_CARD,
    ),
    ChargeOrder(
        order_id=HELD_ORDER,
        customer="Grace Hopper",
        email="grace@example.com",
        amount_cents=12900,
        card_last4="4242",
    ),
]


def money(cents: int) -> str:
    return f"{cents / 100:.2f} EUR"


# -- what the tasks did ---------------------------------------------------------------------


class Journal:
    """A Redis list of what the task bodies did, so the demo can show and check it."""

    def __init__(self, redis: aioredis.Redis, key: str) -> None:
        self.redis = redis
        self.key = key

    async def write(self, task: str, order_id: int, text: str) -> None:
        entry = {"task": task, "order_id": order_id, "text": text, "at": time.time()}
        await self.redis.rpush(self.key, json.dumps(entry))

    async def read(self, start: int = 0) -> list[dict[str, Any]]:
        raw = await self.redis.lrange(self.key, start, -1)
        return [json.loads(r) for r in raw]


class OrderTasks:
    """The task bodies. Registering them on an engine is the caller's business."""

    def __init__(self, journal: Journal, work_seconds: float = 0.4) -> None:
        self.journal = journal
        self.work = work_seconds

    async def charge_order(self, msg: ChargeOrder) -> Charge:
        await asyncio.sleep(self.work)  # talking to the payment provider
        if msg.card_last4 == DECLINED_CARD:
            await self.journal.write(
                "charge-order", msg.order_id, f"card ending {msg.card_last4} declined"
            )
            raise CardDeclinedError(f"card ending {msg.card_last4} was declined")
        charge = Charge(
            order_id=msg.order_id,
            charge_id=f"ch_{uuid.uuid4().hex[:10]}",
            amount_cents=msg.amount_cents,
        )
        await self.journal.write(
            "charge-order",
            msg.order_id,
            f"charged {money(msg.amount_cents)} to {msg.customer} ({charge.charge_id})",
        )
        return charge

    async def send_receipt(self, msg: SendReceipt) -> dict[str, Any]:
        await asyncio.sleep(self.work / 2)
        await self.journal.write(
            "send-receipt",
            msg.charge.order_id,
            f"receipt for {msg.charge.charge_id} ({money(msg.charge.amount_cents)}) "
            f"mailed to {msg.email}",
        )
        return {"sent_to": msg.email}

    async def refund_order(self, msg: RefundOrder) -> dict[str, Any]:
        await asyncio.sleep(self.work / 2)
        await self.journal.write(
            "refund-order",
            msg.order_id,
            f"order of {msg.customer} cancelled, hold of {money(msg.amount_cents)} "
            f"released ({msg.reason})",
        )
        return {"order_id": msg.order_id, "cancelled": True}

    async def alert_ops(self, msg: AlertOps) -> dict[str, Any]:
        await self.journal.write(
            "alert-ops",
            msg.order_id,
            f"[{msg.severity}] {msg.channel}: payment for order {msg.order_id} "
            f"({money(msg.amount_cents)}) failed",
        )
        return {"alerted": msg.channel}


# -- the driver -------------------------------------------------------------------------------


@dataclass
class Tracked:
    """One signature shown in the live view."""

    order_id: int
    step: str  # "charge", "on success", "on error"
    task_name: str
    key: str
    parent: str | None = None  # key of charge-order, for callbacks
    fires_on: SignatureStatus | None = None  # parent status that fires this callback


@dataclass
class PipelineResult:
    tracked: list[Tracked]
    statuses: dict[str, SignatureStatus | None]
    journal: list[dict[str, Any]]
    problems: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


async def sign_order(order: ChargeOrder, run_id: str) -> tuple[TaskSignature, list[Tracked]]:
    """Sign charge-order for one order, with its success and error callbacks."""

    def key(step: str) -> str:
        return f"order-{order.order_id}-{step}-{run_id}"

    ids = {"order_id": order.order_id}
    receipt = await mageflow.asign(
        "send-receipt", key=key("receipt"), task_identifiers=ids, email=order.email
    )
    refund = await mageflow.asign(
        "refund-order", key=key("refund"), task_identifiers=ids, reason="payment failed"
    )
    alert = await mageflow.asign(
        "alert-ops", key=key("alert"), task_identifiers=ids, channel="#payments", severity="high"
    )
    charge = await mageflow.asign(
        "charge-order",
        key=key("charge"),
        task_identifiers=ids,
        success_callbacks=[receipt],
        error_callbacks=[refund, alert],
    )
    done, failed = SignatureStatus.DONE, SignatureStatus.FAILED
    rows = [
        Tracked(order.order_id, "charge", "charge-order", charge.key),
        Tracked(order.order_id, "on success", "send-receipt", receipt.key, charge.key, done),
        Tracked(order.order_id, "on error", "refund-order", refund.key, charge.key, failed),
        Tracked(order.order_id, "on error", "alert-ops", alert.key, charge.key, failed),
    ]
    return charge, rows


def _settled(t: Tracked, statuses: dict[str, SignatureStatus | None]) -> tuple[bool, str]:
    """Whether ``t`` reached its final state, and a note for the view."""
    status = statuses.get(t.key)
    if status is SignatureStatus.SKIPPED:
        outcome = "charge succeeded" if t.fires_on == SignatureStatus.FAILED else "charge failed"
        return True, f"not fired: {outcome}"
    if status in (SignatureStatus.DONE, SignatureStatus.FAILED, SignatureStatus.CANCELED):
        return True, ""
    if t.parent is not None:
        parent = statuses.get(t.parent)
        if parent in (SignatureStatus.DONE, SignatureStatus.FAILED) and parent != t.fires_on:
            outcome = "charge succeeded" if parent == SignatureStatus.DONE else "charge failed"
            return True, f"not fired: {outcome}"
        if parent is not None and parent != t.fires_on:
            return False, f"fires if charge-order {t.fires_on}"
    return False, ""


EXPECTED: dict[int, dict[str, str]] = {
    1001: {
        "charge-order": "done",
        "send-receipt": "done",
        "refund-order": "skipped",
        "alert-ops": "skipped",
    },
    1002: {
        "charge-order": "failed",
        "send-receipt": "skipped",
        "refund-order": "done",
        "alert-ops": "done",
    },
    HELD_ORDER: {
        "charge-order": "done",
        "send-receipt": "done",
        "refund-order": "skipped",
        "alert-ops": "skipped",
    },
}


def check(result: PipelineResult) -> list[str]:
    """Compare the outcome with what the pipeline must do; a list of problems."""
    problems = []
    for t in result.tracked:
        want = EXPECTED[t.order_id][t.task_name]
        got = result.statuses.get(t.key)
        if got != want:
            problems.append(f"order {t.order_id}: {t.task_name} is {got}, expected {want}")
    runs = Counter((e["task"], e["order_id"]) for e in result.journal)
    for order_id, tasks in EXPECTED.items():
        for task, status in tasks.items():
            want_runs = 1 if status in ("done", "failed") else 0
            if runs[(task, order_id)] != want_runs:
                problems.append(
                    f"order {order_id}: {task} ran {runs[(task, order_id)]} time(s), "
                    f"expected {want_runs}"
                )
    return problems


async def run_pipeline(
    journal: Journal,
    *,
    deadline: float = 120.0,
    hold_seconds: float = 2.0,
    view: LiveView | None = None,
) -> PipelineResult:
    """Sign and run the three orders; watch until every signature has settled."""
    run_id = uuid.uuid4().hex[:6]
    charges: list[tuple[TaskSignature, ChargeOrder]] = []
    tracked: list[Tracked] = []
    for order in ORDERS:
        charge, rows = await sign_order(order, run_id)
        charges.append((charge, order))
        tracked += rows
    view = view or LiveView()

    held = next(sig for sig, order in charges if order.order_id == HELD_ORDER)
    await held.suspend()  # suspended before it runs: its run will be parked
    started = time.monotonic()
    for sig, order in charges:
        await sig.aio_run_no_wait(order)
    view.event(0.0, f"dispatched {len(charges)} orders; {held.key} is suspended, its run parked")

    parked_since = time.monotonic()
    resumed = False
    journal_seen = 0
    entries: list[dict[str, Any]] = []
    statuses: dict[str, SignatureStatus | None] = {}
    while True:
        now = time.monotonic()
        elapsed = now - started
        loaded = await asyncio.gather(*(mageflow.load_signature(t.key) for t in tracked))
        statuses = {t.key: s.status if s else None for t, s in zip(tracked, loaded, strict=True)}
        new = await journal.read(journal_seen)
        journal_seen += len(new)
        entries += new
        for e in new:
            view.event(elapsed, f"{e['task']} #{e['order_id']}: {e['text']}")

        notes: dict[str, str] = {}
        settled: dict[str, bool] = {}
        for t in tracked:
            settled[t.key], notes[t.key] = _settled(t, statuses)
        if not resumed and statuses.get(held.key) == SignatureStatus.SUSPENDED:
            notes[held.key] = "parked: its run waits for resume"
        others = [t for t in tracked if t.order_id != HELD_ORDER]
        if (
            not resumed
            and all(settled[t.key] for t in others)
            and now - parked_since >= hold_seconds
        ):
            await mageflow.resume(held.key)  # replays the parked run, exactly once
            resumed = True
            view.event(elapsed, f"resumed {held.key}: its parked run is dispatched now")
            continue

        view.render(
            [
                Row(t.order_id, t.step, t.task_name, t.key, statuses.get(t.key), notes[t.key])
                for t in tracked
            ],
            elapsed,
        )
        if resumed and all(settled.values()):
            break
        if elapsed > deadline:
            waiting = [f"{t.key} ({statuses.get(t.key)})" for t in tracked if not settled[t.key]]
            result = PipelineResult(tracked, statuses, entries, elapsed=elapsed)
            result.problems.append(
                f"deadline of {deadline:.0f}s passed; still waiting for: {', '.join(waiting)}"
            )
            view.finish(False)
            return result
        await asyncio.sleep(0.5)

    result = PipelineResult(tracked, statuses, entries, elapsed=time.monotonic() - started)
    result.problems += check(result)
    view.finish(result.ok)
    return result
