"""Fault injection on a real engine and a real Redis (issue 7); see docs/testing.md.

The short run is part of ``uv run pytest``; ``MAGEFLOW_CHAOS_LONG=1 uv run
pytest tests/chaos -m chaos`` runs the long one (at least 200 worker kills).

Nearly all of a worker-kill scenario is waiting for the engine to notice the
lost worker (~30 s a kill), so in the short run the three kill scenarios run
at once, each on its own task names and workers, on a valkey of their own: a
module fixture starts those the session selected, and each test awaits its
own.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from mageflow._crash import POINTS

from tests.chaos._harness import Harness, details, long_run, report
from tests.chaos._valkey import ValkeyProcess
from tests.e2e._engine import Engine
from tests.e2e._worker import wait_until

pytestmark = pytest.mark.timeout(7200 if long_run() else 600)

Args = tuple[Engine, ValkeyProcess, str]


@pytest.fixture(scope="session")
def chaos_valkey() -> Iterator[ValkeyProcess]:
    server = ValkeyProcess()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def harness_args(
    hatchet_engine: Engine, chaos_valkey: ValkeyProcess, redis_url: str
) -> tuple[Engine, ValkeyProcess, str]:
    if chaos_valkey.proc is None or chaos_valkey.proc.poll() is not None:
        chaos_valkey.start()
    return hatchet_engine, chaos_valkey, redis_url


async def verdict(name: str, h: Harness, *, reconciler_allowed: bool = False) -> None:
    fig = await h.verdict()
    line = report(name, fig)
    assert fig.ok, f"{line}\n{details(fig)}"
    if not reconciler_allowed:
        assert not fig.needs_reconciler, f"{line}\n{details(fig)}"


# -- the worker-kill scenarios ---------------------------------------------------------


async def _two_kills(args: Args, suffix: str) -> None:
    # issue 7 case 5: retries=2. The worker dies twice during the run (the
    # engine counts both as attempts), then the body fails once: MageFlow
    # still has both retries, so the signature is retried and its success
    # callback fires once. lost_worker_attempts=0 gives the engine exactly
    # retries + 1 attempts, so none is left: MageFlow retries as a new run.
    async with Harness(*args, lost_worker_attempts=0, suffix=suffix) as h:
        key = await h.root(fail_times=1, hang_calls=2)
        hanging = f"{h.prefix}hanging:{key}"
        for n in (1, 2):
            await wait_until(
                lambda n=n: _is(h, hanging, n), timeout=120, message=f"call {n} hanging"
            )
            await asyncio.to_thread(h.workers[0].kill)
        await h.settle(timeout=180)
        await verdict("two-kills-then-failure", h)
        assert int(await h.app.observer.get(f"{h.prefix}calls:{key}") or 0) == 4


async def _is(h: Harness, key: str, n: int) -> bool:
    return int(await h.app.observer.get(key) or 0) == n


async def _crash_points(args: Args, suffix: str) -> None:
    # Short: each point kills once in all (the engine takes tens of seconds
    # to hand a lost worker's runs to another, so kills are expensive).
    # Long: each point kills with probability 0.15, at most once per signature.
    if long_run():
        crash, per, n = ",".join(f"{p}:0.15" for p in POINTS), "signature", 24
    else:
        crash, per, n = ",".join(POINTS), "point", 3
    async with Harness(*args, crash=crash, crash_once_per=per, suffix=suffix) as h:
        # roots whose first send is lost: the reconciler re-sends them, and
        # "reconcile:settled" kills it after it recorded the re-send and
        # before it sent it; the next sweep (another worker, or the restarted
        # one) sends it again, and it runs once
        for _ in range(4 if long_run() else 1):
            await h.lost_root()
        await h.mixed(n)
        await h.settle(timeout=1500 if long_run() else 500)
        await verdict(
            "crash-points-long" if long_run() else "crash-points", h, reconciler_allowed=True
        )
        assert h.figures.kills > 0
        if not long_run():
            assert h.crashed_at("reconcile:settled")


async def _random_kills(args: Args, suffix: str) -> None:
    async with Harness(*args, workers=2, suffix=suffix) as h:
        h.supervisor.kill_every = (3.0, 5.0)
        started = time.monotonic()
        while h.figures.kills < 2 and time.monotonic() - started <= 40:
            await h.mixed(3)
            await asyncio.sleep(6.0)
        h.supervisor.kill_every = None
        await h.settle(timeout=300)
        await verdict("random-kills", h, reconciler_allowed=True)


async def _random_kills_long(args: Args) -> None:
    # Three workers, so one is killed while others restart (seconds under
    # load). The workload is topped up to a bound of open roots, chains and
    # swarms instead of growing with time: a lost worker's runs wait ~30 s
    # for the engine, and an unbounded backlog would only lengthen settling.
    # lost_worker_attempts=8: a run survives its worker dying many times
    # before the engine gives up on it (then it is the reconciler's case).
    started = time.monotonic()
    async with Harness(*args, workers=3, lost_worker_attempts=8) as h:
        h.supervisor.kill_every = (1.5, 3.0)
        while h.figures.kills < 200:
            if await h.open_count() < 48:
                await h.mixed(6)
            await asyncio.sleep(1.0)
        h.supervisor.kill_every = None
        await h.settle(timeout=1200)
        fig = await h.verdict()
        load = "/".join(f"{x:.1f}" for x in os.getloadavg())
        line = report(
            "random-kills-long",
            fig,
            extra=f"wall={time.monotonic() - started:.0f}s load={load}",
        )
        print(details(fig))
        assert fig.ok, f"{line}\n{details(fig)}"


Scenario = Callable[[Args, str], Awaitable[None]]
KILL_SCENARIOS: dict[str, Scenario] = {
    "test_two_worker_kills_then_one_failure_is_retried_and_succeeds": _two_kills,
    "test_crash_points_inside_the_runtime": _crash_points,
    "test_random_worker_kills": _random_kills,
}


@pytest.fixture(scope="module")
async def kill_runs(
    request: pytest.FixtureRequest, hatchet_engine: Engine, redis_url: str
) -> AsyncIterator[dict[str, asyncio.Task[None]]]:
    """The short run's kill scenarios the session selected, started at once."""
    selected = {item.name for item in request.session.items}
    wanted = [(name, fn) for name, fn in KILL_SCENARIOS.items() if name in selected]
    if long_run() or not wanted:
        yield {}
        return
    valkey = ValkeyProcess()
    valkey.start()
    args = (hatchet_engine, valkey, redis_url)
    runs = {
        name: asyncio.create_task(fn(args, f"-k{i}"), name=name)
        for i, (name, fn) in enumerate(wanted)
    }
    try:
        yield runs
    finally:
        for run in runs.values():
            run.cancel()
        await asyncio.gather(*runs.values(), return_exceptions=True)
        valkey.stop()


async def test_two_worker_kills_then_one_failure_is_retried_and_succeeds(
    kill_runs: dict[str, asyncio.Task[None]], harness_args: Args
) -> None:
    if long_run():
        await _two_kills(harness_args, "")
    else:
        await kill_runs["test_two_worker_kills_then_one_failure_is_retried_and_succeeds"]


async def test_crash_points_inside_the_runtime(
    kill_runs: dict[str, asyncio.Task[None]], harness_args: Args
) -> None:
    if long_run():
        await _crash_points(harness_args, "")
    else:
        await kill_runs["test_crash_points_inside_the_runtime"]


async def test_random_worker_kills(
    kill_runs: dict[str, asyncio.Task[None]], harness_args: Args
) -> None:
    # short: a handful of kills; long (MAGEFLOW_CHAOS_LONG=1): at least 200
    if long_run():
        await _random_kills_long(harness_args)
    else:
        await kill_runs["test_random_worker_kills"]


# -- Redis faults ------------------------------------------------------------------------


async def test_redis_killed_and_restarted_while_runs_finish_and_fail(harness_args: Args) -> None:
    # issue 7 case 6: valkey (AOF, fsync always) SIGKILLed and restarted twice,
    # while runs record successes and retryable failures
    engine, valkey, observer = harness_args
    async with Harness(engine, valkey, observer) as h:
        for i in range(16):
            await h.root(fail_times=(0, 1, 2, 3)[i % 4], sleep=0.3 + 0.1 * (i % 8))
        for _ in range(2):
            await asyncio.sleep(1.2)
            await asyncio.to_thread(valkey.restart_after, 1.6)
            h.figures.redis_restarts += 1
        await h.settle(timeout=240)
        await verdict("redis-restart", h)


async def test_redis_paused(harness_args: Args) -> None:
    engine, valkey, observer = harness_args
    async with Harness(engine, valkey, observer) as h:
        await h.mixed(12)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(valkey.pause, 3.0)
        h.figures.redis_pauses += 1
        await h.settle(timeout=180)
        await verdict("redis-pause", h)
