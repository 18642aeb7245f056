"""Every status change a store script makes is a cell of ``TRANSITIONS``.

Each script call is audited on a real Redis: the status of every signature
under the prefix is read before and after the call (script calls are
serialized for this, which the drivers below do anyway), and each change must
be a table cell. One script may apply two events to one signature in a row,
each a cell: a container started with nothing to run completes at once (start
then succeed or fail), and resuming a started container starts it again
(resume then start). So a change must be one cell or two cells in a row.
The drivers are the randomized container tests plus random lifecycle calls
on plain tasks with callbacks.

By default each workload runs a few chosen seeds which, together, make every
status change listed in ``EXERCISED`` (what 30 seeds of each workload make);
the last test checks they still do, so a change that moves the random paths
cannot quietly shrink what the default run proves.
``MAGEFLOW_TEST_AUDIT_SEEDS=N`` runs seeds 0..N-1 of every workload instead
(docs/testing.md).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Awaitable, Callable
from typing import Any

import mageflow
import pytest
from mageflow import MageflowRuntime
from mageflow._store.keys import F
from thirdmagic.status import PREVIOUS, TRANSITIONS, LifecycleEvent, SignatureStatus

import tests.integration.test_container_invariants as inv
from tests.integration.container_models import Num

_FULL = os.environ.get("MAGEFLOW_TEST_AUDIT_SEEDS")
# seeds chosen (greedily, over 30 of each) to make every change in EXERCISED
CONTAINER_SEEDS = range(int(_FULL)) if _FULL else (7, 10, 12, 20)
CHAIN_SWARM_SEEDS = range(int(_FULL)) if _FULL else (3,)
TASK_SEEDS = range(int(_FULL)) if _FULL else (5, 6, 13, 27)

EXERCISED: frozenset[tuple[str, str, str]] = frozenset(
    {
        ("advance", "active", "done"),
        ("advance", "pending", "active"),
        ("advance", "pending", "done"),
        ("advance", "pending", "skipped"),
        ("begin", "pending", "active"),
        ("finish", "active", "done"),
        ("finish", "active", "failed"),
        ("finish", "pending", "skipped"),
        ("finish", "suspended", "done"),
        ("swarm_close", "active", "done"),
        ("swarm_close", "pending", "skipped"),
        ("transition", "active", "interrupted"),
        ("transition", "active", "suspended"),
        ("transition", "interrupted", "active"),
        ("transition", "interrupted", "canceled"),
        ("transition", "interrupted", "pending"),
        ("transition", "pending", "canceled"),
        ("transition", "pending", "interrupted"),
        ("transition", "pending", "suspended"),
        ("transition", "suspended", "active"),
        ("transition", "suspended", "canceled"),
        ("transition", "suspended", "interrupted"),
        ("transition", "suspended", "pending"),
    }
)
"""(script, status before, status after) the randomized workloads make"""

# what this session's audited runs made, and which (workload, seed) ran
SEEN: set[tuple[str, str, str]] = set()
RAN: set[tuple[str, int]] = set()


def _cells() -> set[tuple[str, str]]:
    cells: set[tuple[str, str]] = set()
    for (state, _event), target in TRANSITIONS.items():
        if target == PREVIOUS:
            # back to the status it had before: any status that leads here
            sources = {s for (s, _), t in TRANSITIONS.items() if t == state}
            cells |= {(state.value, s.value) for s in sources | {SignatureStatus.PENDING}}
        else:
            cells.add((state.value, str(target)))
    return cells


ONE = _cells()
TWO = {(a, c) for a, b in ONE for b2, c in ONE if b == b2}
ALLOWED = ONE | TWO
# the scripts that may apply two events to one signature (see the docstring)
TWO_STEPS = frozenset({"advance", "transition"})


class StatusAudit:
    """Wraps every script of a store; records (script, key, before, after)."""

    def __init__(self, runtime: MageflowRuntime) -> None:
        self.store = runtime.store
        self.lock = asyncio.Lock()
        self.changes: list[tuple[str, str, str, str]] = []
        self.calls = 0
        for name, script in list(self.store.scripts.items()):
            self.store.scripts[name] = self._wrap(name, script)  # type: ignore[assignment]

    def _wrap(self, name: str, script: Callable[..., Awaitable[Any]]) -> Any:
        async def audited(**kwargs: Any) -> Any:
            async with self.lock:
                before = await self.statuses()
                reply = await script(**kwargs)
                after = await self.statuses()
            self.calls += 1
            for key, status in after.items():
                was = before.get(key)
                if was is not None and status is not None and was != status:
                    self.changes.append((name, key, was, status))
            return reply

        return audited

    async def statuses(self) -> dict[str, str | None]:
        client = self.store.client
        keys = [
            k async for k in client.scan_iter(match=f"{self.store.keys.sig_prefix}*", count=1000)
        ]
        if not keys:
            return {}
        pipe = client.pipeline(transaction=False)
        for k in keys:
            pipe.hget(k, F.status)
        return dict(zip(keys, await pipe.execute(), strict=True))

    def check(self, workload: str, seed: int) -> None:
        assert self.calls > 0
        wrong = [
            c for c in self.changes if (c[2], c[3]) not in (ALLOWED if c[0] in TWO_STEPS else ONE)
        ]
        assert not wrong, f"status changes outside the transition table: {wrong}"
        SEEN.update((name, was, now) for name, _, was, now in self.changes)
        RAN.add((workload, seed))


@pytest.fixture
def manager() -> inv.StubEngine:
    return inv.StubEngine()


@pytest.fixture
def audit(runtime: MageflowRuntime) -> StatusAudit:
    return StatusAudit(runtime)


def test_allowed_pairs_keep_finished_signatures_finished() -> None:
    # only retry (mageflow.retry) leads out of a finished status, back to pending
    assert {b for a, b in ALLOWED if a == "done"} == {"done"}
    for terminal in ("failed", "canceled"):
        assert {b for a, b in ONE if a == terminal} == {terminal, "pending"}
    assert ("interrupted", "done") not in ALLOWED
    assert ("pending", "active") in ONE


@pytest.mark.parametrize("seed", CONTAINER_SEEDS)
async def test_randomized_containers_stay_in_the_table(
    runtime: MageflowRuntime,
    manager: inv.StubEngine,
    audit: StatusAudit,
    seed: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await inv.test_random_lifecycle_interleavings(runtime, manager, seed, monkeypatch)
    await inv.test_random_nested_interleavings(runtime, manager, seed + 1000)
    audit.check("containers", seed)
    assert audit.changes, "the drivers changed statuses"


@pytest.mark.parametrize("seed", CHAIN_SWARM_SEEDS)
async def test_randomized_chains_and_swarms_stay_in_the_table(
    runtime: MageflowRuntime,
    manager: inv.StubEngine,
    audit: StatusAudit,
    seed: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await inv.test_random_swarm_interleavings(runtime, manager, seed, monkeypatch)
    await inv.test_random_chain_interleavings(runtime, manager, seed)
    audit.check("chains and swarms", seed)


@pytest.mark.parametrize("seed", TASK_SEEDS)
async def test_randomized_task_lifecycle_stays_in_the_table(
    runtime: MageflowRuntime, manager: inv.StubEngine, audit: StatusAudit, seed: int
) -> None:
    drv = inv._driver(runtime, manager, seed)
    rng = random.Random(seed)
    manager.on_cancel = drv.cancel
    ok = await mageflow.asign("collect")
    err = await mageflow.asign("on_error")
    tasks = [
        await mageflow.asign(
            "work", fail=rng.random() < 0.3, success_callbacks=[ok], error_callbacks=[err]
        )
        for _ in range(4)
    ]
    for _ in range(150):
        sig = rng.choice(tasks)
        roll = rng.random()
        try:
            if roll < 0.25:
                await sig.aio_run_no_wait(Num(x=rng.randint(0, 9)))
            elif roll < 0.35:
                await sig.suspend()
            elif roll < 0.45:
                await sig.interrupt()
            elif roll < 0.6:
                await sig.resume()
            elif roll < 0.63:
                await runtime.apply(sig.key, LifecycleEvent.CANCEL)
        except mageflow.InvalidTransitionError:
            pass
        drv.absorb()
        if drv.inflight and rng.random() < 0.6:
            await drv.step()
    audit.check("tasks", seed)
    assert {c[0] for c in audit.changes} >= {"begin", "finish"}


def test_the_seeds_make_every_exercised_change() -> None:
    """Runs after the workloads above (file order); skipped when some did not run."""
    wanted = {
        *(("containers", s) for s in CONTAINER_SEEDS),
        *(("chains and swarms", s) for s in CHAIN_SWARM_SEEDS),
        *(("tasks", s) for s in TASK_SEEDS),
    }
    if not wanted <= RAN:
        pytest.skip("only part of the audited workloads ran")
    missing = EXERCISED - SEEN
    assert not missing, (
        f"the audited seeds no longer make {sorted(missing)}: pick seeds that do "
        "(run with MAGEFLOW_TEST_AUDIT_SEEDS=30 to see which)"
    )
