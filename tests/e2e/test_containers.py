"""Chains and swarms on a real Hatchet engine.

Task bodies (``mf_container_app``) record ``start``/``end`` with their signature
key into a Redis list per test tag; the tests poll those records and the store
with deadlines. "Nothing ran twice" is checked by counting records per key;
"nothing else starts" by the store's own state (a member that was never taken
off a swarm's queue has no dispatch id and no run), not by waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import mageflow
import pytest
from mageflow import (
    ChainSignature,
    SignatureStatus,
    SwarmClosedError,
    SwarmConfig,
    SwarmFullError,
    SwarmSignature,
    TaskSignature,
)

from tests.e2e._worker import WorkerProcess, wait_until
from tests.e2e.mf_container_app import ContainerApp, Payload, digest, filler

pytestmark = pytest.mark.e2e

DONE = SignatureStatus.DONE
# Hatchet gives the runs of a worker that stopped heartbeating to another worker
# once its last heartbeat is 30 s old (ListTasksToReassign), polled every 1-30 s.
REASSIGN_DEADLINE = 150.0


# -- helpers -------------------------------------------------------------------


async def status_of(capp: ContainerApp, key: str) -> SignatureStatus | None:
    sig = await capp.mf.runtime.store.load(key)
    return sig.status if sig else None


async def wait_status(
    capp: ContainerApp, key: str, status: SignatureStatus, timeout: float = 60
) -> None:
    async def check() -> bool:
        return await status_of(capp, key) == status

    await wait_until(check, timeout=timeout, message=f"{key} to become {status}")


async def wait_records(
    capp: ContainerApp,
    tag: str,
    task: str,
    event: str = "start",
    n: int = 1,
    timeout: float = 60,
) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        got = await capp.records(tag, task, event)
        return got if len(got) >= n else None

    return await wait_until(check, timeout=timeout, message=f"{n} {task}/{event} record(s)")


async def field(capp: ContainerApp, key: str, name: str) -> str | None:
    store = capp.mf.runtime.store
    value = await capp.redis.hget(store.keys.sig(key), name)
    return str(value) if value is not None else None


async def members_of(capp: ContainerApp, sig: ChainSignature | SwarmSignature) -> list[str]:
    return await capp.mf.runtime.store.members(sig)


async def queued(capp: ContainerApp, swarm: SwarmSignature) -> list[str]:
    return list(await capp.redis.lrange(capp.mf.runtime.store.keys.swarm_queue(swarm.key), 0, -1))


def per_key(records: list[dict[str, Any]]) -> Counter[str]:
    return Counter(r["key"] for r in records)


def peak_overlap(records: list[dict[str, Any]]) -> int:
    """Most members between their start and end records at any moment (ends first on ties)."""
    events = sorted(
        (r["at"], 0 if r["event"] == "end" else 1) for r in records if r["task"] == "work"
    )
    running = peak = 0
    for _, kind in events:
        running += 1 if kind else -1
        peak = max(peak, running)
    return peak


async def runs_for(capp: ContainerApp, key: str) -> list[Any]:
    listed = await capp.mf.runs.aio_list(
        additional_metadata={"mageflow_signature_key": key}, only_tasks=True
    )
    return list(listed.rows or [])


async def work_members(
    capp: ContainerApp, n: int, group: str = "main", **kwargs: Any
) -> list[TaskSignature]:
    return [await mageflow.asign(capp.name("work", group), i=i, **kwargs) for i in range(n)]


# -- chains ----------------------------------------------------------------------


async def test_chain_result_flow(capp: ContainerApp, tag: str) -> None:
    ok = await mageflow.asign(capp.name("collect"), tag=tag, label="chain")
    err = await mageflow.asign(capp.name("on_error"), tag=tag)
    last = await mageflow.asign(capp.name("step"), add=100)  # its own kwarg wins
    chain = await mageflow.achain(
        [capp.tasks["start"], capp.name("step"), last.key],
        success=[ok],
        error=[err],
        tag=tag,
        add=5,
    )
    await chain.aio_run_no_wait({"x": 1})

    got = await wait_records(capp, tag, "collect")
    assert got[0]["value"] == 1 + 5 + 5 + 100
    await wait_status(capp, ok.key, DONE)
    await wait_status(capp, chain.key, DONE)

    starts = await capp.records(tag, event="start")
    first, second, third = chain.tasks
    by_key = {r["key"]: r for r in starts}
    assert by_key[first]["input"] == {"tag": tag, "x": 1, "add": 5, "seconds": 0.0}
    assert by_key[second]["input"]["prev"] == 6 and by_key[second]["input"]["add"] == 5
    assert by_key[third]["input"]["prev"] == 11 and by_key[third]["input"]["add"] == 100
    assert per_key(starts) == Counter({first: 1, second: 1, third: 1, ok.key: 1})
    assert await status_of(capp, err.key) == SignatureStatus.SKIPPED  # the branch not taken

    # one engine run per step and callback; none for the chain itself
    for key in (first, second, third, ok.key):
        runs = await wait_until(lambda k=key: runs_for(capp, k), timeout=30)
        assert len(runs) == 1, key
    assert await runs_for(capp, chain.key) == []


async def test_chain_failure_stops_and_fires_error_once(capp: ContainerApp, tag: str) -> None:
    ok = await mageflow.asign(capp.name("collect"), tag=tag, label="never")
    err = await mageflow.asign(capp.name("on_error"), tag=tag, label="chain-err")
    chain = await mageflow.achain(
        [capp.name("start"), capp.name("boom"), capp.name("step")],
        success=[ok],
        error=[err],
        tag=tag,
        add=5,
    )
    await chain.aio_run_no_wait({"x": 1})

    got = await wait_records(capp, tag, "on-error", timeout=90)
    # the failing step's original message, plus the callback's own kwargs
    assert got[0]["input"]["prev"] == 6
    assert got[0]["input"]["tag"] == tag and got[0]["input"]["add"] == 5
    assert got[0]["input"]["label"] == "chain-err"
    await wait_status(capp, err.key, DONE)
    await wait_status(capp, chain.key, SignatureStatus.FAILED)

    _, failing, later = chain.tasks
    assert len(await capp.records(tag, "boom")) == 2  # retries=1: two attempts
    assert await status_of(capp, failing) == SignatureStatus.FAILED
    # the later step was never dispatched, so it can never run: skipped
    assert await status_of(capp, later) == SignatureStatus.SKIPPED
    assert await field(capp, later, "d") is None
    assert await capp.records(tag, "step") == []
    assert await capp.records(tag, "collect") == []
    assert await status_of(capp, ok.key) == SignatureStatus.SKIPPED  # the branch not taken
    assert len(await capp.records(tag, "on-error")) == 1


# -- swarms ----------------------------------------------------------------------


async def test_swarm_concurrency_cap_observed(capp: ContainerApp, tag: str) -> None:
    cap, n = 3, 9
    ok = await mageflow.asign(capp.name("collect"), tag=tag, label="swarm")
    members = await work_members(capp, n)
    swarm = await mageflow.aswarm(
        tasks=members,
        success_callbacks=[ok],
        config=SwarmConfig(max_concurrency=cap),
        is_swarm_closed=True,
        tag=tag,
    )
    await swarm.aio_run_no_wait({"seconds": 0.6})

    got = await wait_records(capp, tag, "collect", timeout=90)
    assert got[0]["value"] == [i * 10 for i in range(n)]  # in admission order
    await wait_status(capp, swarm.key, DONE)
    await wait_status(capp, ok.key, DONE)

    work = await capp.records(tag, "work")
    assert per_key([r for r in work if r["event"] == "start"]) == Counter(
        {m.key: 1 for m in members}
    )
    peak = peak_overlap(work)
    assert 2 <= peak <= cap, f"peak overlap {peak} with max_concurrency={cap}"
    assert len(await capp.records(tag, "collect")) == 1


async def test_swarm_prefetch_keeps_the_cap_and_runs_each_member_once(
    capp: ContainerApp, tag: str
) -> None:
    # the worker has more free slots (20) than the swarm may use: runs sent
    # ahead start at once and wait at BEGIN for a place
    cap, n = 3, 12
    ok = await mageflow.asign(capp.name("collect"), tag=tag, label="prefetch")
    members = await work_members(capp, n)
    swarm = await mageflow.aswarm(
        tasks=members,
        success_callbacks=[ok],
        config=SwarmConfig(max_concurrency=cap, prefetch=cap),
        is_swarm_closed=True,
        tag=tag,
    )
    await swarm.aio_run_no_wait({"seconds": 0.3})

    got = await wait_records(capp, tag, "collect", timeout=120)
    assert got[0]["value"] == [i * 10 for i in range(n)]
    await wait_status(capp, swarm.key, DONE)
    work = await capp.records(tag, "work")
    assert per_key([r for r in work if r["event"] == "start"]) == Counter(
        {m.key: 1 for m in members}
    )
    peak = peak_overlap(work)
    assert peak <= cap, f"peak overlap {peak} with max_concurrency={cap}"
    # the first runs found every place taken: the swarm stopped sending ahead
    assert await field(capp, swarm.key, "fu") is not None


async def test_cancel_of_a_swarm_runs_no_member_sent_ahead(capp: ContainerApp, tag: str) -> None:
    n = 10
    members = await work_members(capp, n)
    swarm = await mageflow.aswarm(
        tasks=members,
        config=SwarmConfig(max_concurrency=2, prefetch=4),
        is_swarm_closed=True,
        tag=tag,
    )
    await swarm.aio_run_no_wait({"seconds": 2.0})
    await wait_records(capp, tag, "work", n=2, timeout=60)
    await mageflow.cancel(swarm.key)
    started = {r["key"] for r in await capp.records(tag, "work", "start")}
    assert len(started) == 2
    await wait_status(capp, swarm.key, SignatureStatus.CANCELED)
    for m in members:
        if m.key not in started:
            # by the swarm's cancel, or by its own run arriving first
            assert await status_of(capp, m.key) == SignatureStatus.CANCELED
    # the four sent ahead were waiting for a place (or queued in the engine):
    # none of them runs its body, now or later
    await asyncio.sleep(4.0)
    assert {r["key"] for r in await capp.records(tag, "work", "start")} == started


async def test_swarm_add_while_running_then_close(capp: ContainerApp, tag: str) -> None:
    ok = await mageflow.asign(capp.name("collect"), tag=tag, label="open")
    swarm = await mageflow.aswarm(
        success_callbacks=[ok],
        config=SwarmConfig(max_concurrency=2, max_task_allowed=5),
        tag=tag,
    )
    early = await work_members(capp, 2)
    await swarm.aio_run_in_swarm(early, {"seconds": 0.5})
    await swarm.aio_run_no_wait()
    await wait_records(capp, tag, "work")

    more = [await mageflow.asign(capp.name("work"), i=i) for i in (2, 3)]
    await swarm.aio_run_tasks_in_swarm(more, [{"seconds": 0.3}, {"seconds": 0.1}])
    by_name = await swarm.aio_run_in_swarm(capp.name("work"), {"i": 4, "seconds": 0.1})
    with pytest.raises(SwarmFullError):
        await swarm.aio_run_in_swarm(capp.name("work"), {"i": 5})

    keys = [*(m.key for m in early), *(m.key for m in more), *by_name]
    for key in keys:
        await wait_status(capp, key, DONE)
    # every member finished, but an open swarm is not complete
    assert await status_of(capp, swarm.key) == SignatureStatus.ACTIVE
    assert await capp.records(tag, "collect") == []

    await swarm.close_swarm()
    got = await wait_records(capp, tag, "collect")
    assert got[0]["value"] == [0, 10, 20, 30, 40]
    await wait_status(capp, swarm.key, DONE)
    await wait_status(capp, ok.key, DONE)
    with pytest.raises(SwarmClosedError):
        await swarm.aio_run_in_swarm(capp.name("work"), {"i": 6})
    starts = await capp.records(tag, "work", "start")
    assert per_key(starts) == Counter(dict.fromkeys(keys, 1))
    assert len(await capp.records(tag, "collect")) == 1


async def test_swarm_failure_threshold(capp: ContainerApp, tag: str) -> None:
    ok = await mageflow.asign(capp.name("collect"), tag=tag, label="never")
    err = await mageflow.asign(capp.name("on_error"), tag=tag, label="swarm-err")
    booms = [await mageflow.asign(capp.name("boom")) for _ in range(2)]
    workers = await work_members(capp, 6)
    swarm = await mageflow.aswarm(
        tasks=[*booms, *workers],
        success_callbacks=[ok],
        error_callbacks=[err],
        config=SwarmConfig(max_concurrency=2, stop_after_n_failures=2),
        is_swarm_closed=True,
        tag=tag,
    )
    await swarm.aio_run_no_wait({"seconds": 4.0})

    got = await wait_records(capp, tag, "on-error", timeout=90)
    assert got[0]["input"]["label"] == "swarm-err" and got[0]["input"]["tag"] == tag
    await wait_status(capp, err.key, DONE)
    assert await status_of(capp, swarm.key) == SignatureStatus.FAILED

    # members taken off the queue before the threshold finish; the queued rest
    # can never start, so the failure skipped them (and emptied the queue)
    assert await queued(capp, swarm) == []
    taken = [m.key for m in workers if await field(capp, m.key, "d") is not None]
    waiting = [m.key for m in workers if m.key not in taken]
    # the first failure frees a slot (a 4 s member takes it); the second stops the swarm
    assert len(taken) <= 2, taken
    for key in taken:
        await wait_status(capp, key, DONE)
    for key in waiting:
        assert await status_of(capp, key) == SignatureStatus.SKIPPED
    starts = await capp.records(tag, "work", "start")
    assert set(per_key(starts)) == set(taken)
    assert len(await capp.records(tag, "boom")) == 4  # two attempts each
    assert len(await capp.records(tag, "on-error")) == 1
    assert await capp.records(tag, "collect") == []


# -- nesting -----------------------------------------------------------------------


async def test_swarm_inside_chain(capp: ContainerApp, tag: str) -> None:
    ok = await mageflow.asign(capp.name("collect"), tag=tag, label="nested")
    inner = await mageflow.aswarm(
        tasks=[capp.name("step"), await mageflow.asign(capp.name("step"), add=10)],
        is_swarm_closed=True,
    )
    chain = await mageflow.achain(
        [capp.name("start"), inner, capp.name("total")], success=[ok], tag=tag, add=5
    )
    await chain.aio_run_no_wait({"x": 1})

    got = await wait_records(capp, tag, "collect", timeout=90)
    # start: 1 + 5 = 6; swarm members: 6 + 5 and 6 + 10; total: their sum
    assert got[0]["value"] == 11 + 16
    totals = await capp.records(tag, "total")
    assert [t["input"]["values"] for t in totals] == [[11, 16]]
    await wait_status(capp, chain.key, DONE)
    await wait_status(capp, inner.key, DONE)
    steps = await capp.records(tag, "step", "start")
    assert sorted(s["input"]["prev"] for s in steps) == [6, 6]
    await wait_status(capp, ok.key, DONE)
    assert len(await capp.records(tag, "collect")) == 1


async def test_chain_inside_swarm(capp: ContainerApp, tag: str) -> None:
    ok = await mageflow.asign(capp.name("collect"), tag=tag, label="nested")
    chain_a = await mageflow.achain([capp.name("start"), capp.name("step")], add=1)
    chain_b = await mageflow.achain([capp.name("start"), capp.name("step")], add=2)
    plain = await mageflow.asign(capp.name("start"), add=100)
    swarm = await mageflow.aswarm(
        tasks=[chain_a, chain_b, plain],
        success_callbacks=[ok],
        config=SwarmConfig(max_concurrency=2),
        is_swarm_closed=True,
        tag=tag,
    )
    await swarm.aio_run_no_wait({"x": 10})

    got = await wait_records(capp, tag, "collect", timeout=90)
    assert got[0]["value"] == [10 + 1 + 1, 10 + 2 + 2, 10 + 100]
    for key in (swarm.key, chain_a.key, chain_b.key, plain.key, ok.key):
        await wait_status(capp, key, DONE)
    starts = await capp.records(tag, event="start")
    assert all(n == 1 for n in per_key(starts).values())
    assert len(starts) == 2 + 2 + 1 + 1


# -- lifecycle ---------------------------------------------------------------------


async def test_chain_suspend_and_resume_midway(capp: ContainerApp, tag: str) -> None:
    ok = await mageflow.asign(capp.name("collect"), tag=tag, label="resumed")
    chain = await mageflow.achain(
        [capp.name("start"), capp.name("step"), capp.name("step"), capp.name("step")],
        success=[ok],
        tag=tag,
        add=1,
        seconds=2.0,
    )
    await chain.aio_run_no_wait({"x": 0})
    s0, s1, s2, s3 = chain.tasks

    started = await wait_records(capp, tag, "step", timeout=60)
    assert started[0]["key"] == s1
    await chain.suspend()
    assert await status_of(capp, chain.key) == SignatureStatus.SUSPENDED
    # the step that was running finishes; the next one arrives and is parked
    await wait_status(capp, s1, DONE)
    await wait_until(lambda: field(capp, s2, "pm"), timeout=60, message="next step parked")
    assert await status_of(capp, s2) == SignatureStatus.SUSPENDED
    assert await status_of(capp, s3) == SignatureStatus.SUSPENDED
    assert [r["key"] for r in await capp.records(tag, "step", "start")] == [s1]

    await chain.resume()
    got = await wait_records(capp, tag, "collect", timeout=60)
    assert got[0]["value"] == 4
    await wait_status(capp, chain.key, DONE)
    await wait_status(capp, ok.key, DONE)
    starts = await capp.records(tag, event="start")
    assert per_key(starts) == Counter({s0: 1, s1: 1, s2: 1, s3: 1, ok.key: 1})


async def test_swarm_suspend_and_resume_midway(capp: ContainerApp, tag: str) -> None:
    n = 8
    ok = await mageflow.asign(capp.name("collect"), tag=tag, label="resumed")
    members = await work_members(capp, n)
    swarm = await mageflow.aswarm(
        tasks=members,
        success_callbacks=[ok],
        config=SwarmConfig(max_concurrency=2),
        is_swarm_closed=True,
        tag=tag,
    )
    await swarm.aio_run_no_wait({"seconds": 0.8})
    await wait_records(capp, tag, "work", "end", n=3, timeout=60)
    await swarm.suspend()
    assert await status_of(capp, swarm.key) == SignatureStatus.SUSPENDED

    async def settled() -> bool:
        # a member whose run began has a run id; suspended, it may still finish
        for m in members:
            if await status_of(capp, m.key) != DONE and await field(capp, m.key, "r"):
                return False
        return True

    await wait_until(settled, timeout=60, message="members already running finished")
    statuses = {m.key: await status_of(capp, m.key) for m in members}
    done = {k for k, s in statuses.items() if s == DONE}
    assert 3 <= len(done) < n
    assert all(s == SignatureStatus.SUSPENDED for k, s in statuses.items() if k not in done)
    starts = await capp.records(tag, "work", "start")
    assert set(per_key(starts)) == done  # nothing else began while suspended

    await swarm.resume()
    got = await wait_records(capp, tag, "collect", timeout=90)
    assert got[0]["value"] == [i * 10 for i in range(n)]
    await wait_status(capp, swarm.key, DONE)
    await wait_status(capp, ok.key, DONE)
    starts = await capp.records(tag, "work", "start")
    assert per_key(starts) == Counter({m.key: 1 for m in members})
    assert len(await capp.records(tag, "collect")) == 1


async def test_swarm_interrupt_then_resume(capp: ContainerApp, tag: str) -> None:
    n = 5
    ok = await mageflow.asign(capp.name("collect"), tag=tag, label="resumed")
    members = await work_members(capp, n)
    swarm = await mageflow.aswarm(
        tasks=members,
        success_callbacks=[ok],
        config=SwarmConfig(max_concurrency=2),
        is_swarm_closed=True,
        tag=tag,
    )
    await swarm.aio_run_no_wait({"seconds": 3.0})
    await wait_records(capp, tag, "work", n=2, timeout=60)
    await swarm.interrupt()
    assert await status_of(capp, swarm.key) == SignatureStatus.INTERRUPTED
    started = {r["key"] for r in await capp.records(tag, "work", "start")}
    finished = {r["key"] for r in await capp.records(tag, "work", "end")}
    running = started - finished
    assert running, "no member was running when the swarm was interrupted"

    async def cancelled() -> bool:
        for key in running:
            runs = await runs_for(capp, key)
            if not runs or not all(str(r.status).endswith("CANCELLED") for r in runs):
                return False
        return True

    await wait_until(cancelled, timeout=60, message="running members' runs cancelled")
    for m in members:
        if m.key not in finished:
            assert await status_of(capp, m.key) == SignatureStatus.INTERRUPTED
    assert {r["key"] for r in await capp.records(tag, "work", "end")} == finished
    assert {r["key"] for r in await capp.records(tag, "work", "start")} == started

    await swarm.resume()
    got = await wait_records(capp, tag, "collect", timeout=90)
    assert got[0]["value"] == [i * 10 for i in range(n)]
    await wait_status(capp, swarm.key, DONE)
    await wait_status(capp, ok.key, DONE)
    ends = await capp.records(tag, "work", "end")
    assert per_key(ends) == Counter({m.key: 1 for m in members})
    starts = per_key(await capp.records(tag, "work", "start"))
    # the interrupted members ran again from the start; the others once
    assert starts == Counter({m.key: 2 if m.key in running else 1 for m in members})
    assert len(await capp.records(tag, "collect")) == 1


# -- crash -------------------------------------------------------------------------


@pytest.mark.timeout(420)
async def test_worker_sigkill_mid_swarm_then_restart(
    capp: ContainerApp, tag: str, crash_worker: WorkerProcess
) -> None:
    n, cap = 8, 4
    ok = await mageflow.asign(capp.name("collect", "crash"), tag=tag, label="crash")
    err = await mageflow.asign(capp.name("on_error", "crash"), tag=tag)
    members = await work_members(capp, n, "crash")
    swarm = await mageflow.aswarm(
        tasks=members,
        success_callbacks=[ok],
        error_callbacks=[err],
        config=SwarmConfig(max_concurrency=cap),
        is_swarm_closed=True,
        tag=tag,
    )
    await swarm.aio_run_no_wait({"seconds": 5.0})
    await wait_records(capp, tag, "work", n=cap, timeout=60)

    ended = {r["key"] for r in await capp.records(tag, "work", "end")}
    lost = {r["key"] for r in await capp.records(tag, "work", "start")} - ended
    first_pid = crash_worker.pid
    killed_at = time.time()
    await asyncio.to_thread(crash_worker.kill)
    await asyncio.to_thread(crash_worker.start)
    assert crash_worker.pid != first_pid
    assert lost, "no member was running when the worker was killed"

    await wait_status(capp, swarm.key, DONE, timeout=REASSIGN_DEADLINE + 60)
    got = await wait_records(capp, tag, "collect", timeout=60)
    assert got[0]["value"] == [i * 10 for i in range(n)]
    await wait_status(capp, ok.key, DONE)
    for m in members:
        assert await status_of(capp, m.key) == DONE
    ends = per_key(await capp.records(tag, "work", "end"))
    assert set(ends) == {m.key for m in members}
    assert len(await capp.records(tag, "collect")) == 1
    assert await capp.records(tag, "on-error") == []
    # the runs lost with the worker were given to the new one and ran again
    starts = await capp.records(tag, "work", "start")
    rerun = [r for r in starts if r["key"] in lost and r["at"] > killed_at]
    assert {r["key"] for r in rerun} == lost
    delay = min(r["at"] for r in rerun) - killed_at
    print(f"runs of the killed worker ran again {delay:.1f}s after the kill")
    assert await status_of(capp, err.key) == SignatureStatus.SKIPPED  # the branch not taken


# -- payloads by reference (issue 10) --------------------------------------------------


async def test_6mb_input_and_result_round_trip_through_task_and_callback(
    capp: ContainerApp, tag: str
) -> None:
    six_mb = 6 * 1024 * 1024
    data = filler(7, six_mb)
    cb = await mageflow.asign(capp.name("measure"), tag=tag)
    sig = await mageflow.asign(capp.name("payload"), success_callbacks=[cb])
    await sig.aio_run_no_wait(Payload(tag=tag, data=data, i=3, size=six_mb))

    (got,) = await wait_records(capp, tag, "measure", timeout=120)
    expected = filler(3, six_mb)
    assert got["kind"] == "str" and got["length"] == six_mb
    assert got["digest"] == digest(expected)
    (ran,) = await capp.records(tag, "payload", "start")
    assert ran["size"] == six_mb and ran["digest"] == digest(data)
    await wait_status(capp, cb.key, DONE)
    await mageflow.remove(sig.key)
    assert not await capp.redis.exists(capp.mf.runtime.store.keys.blob(sig.key))


async def test_swarm_results_over_4mb_reach_the_callback(capp: ContainerApp, tag: str) -> None:
    # the case: 500 members returning 12 KB each, about 6 MB in all
    n, size = 500, 12 * 1024
    cb = await mageflow.asign(capp.name("measure"), tag=tag)
    swarm = await mageflow.aswarm(success_callbacks=[cb], config=SwarmConfig(max_concurrency=50))
    await swarm.aio_run_tasks_in_swarm(
        [capp.name("payload")] * n, [Payload(tag=tag, i=i, size=size) for i in range(n)]
    )
    await swarm.aio_run_no_wait({"tag": tag})
    await swarm.close_swarm()

    (got,) = await wait_records(capp, tag, "measure", timeout=300)
    expected = [filler(i, size) for i in range(n)]
    assert got["kind"] == "list" and got["length"] == n
    assert got["digest"] == digest(expected)
    await wait_status(capp, swarm.key, DONE)
