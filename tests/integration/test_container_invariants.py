"""Container invariants under randomized interleavings, redeliveries and crashes.

The engine here is a stub that only records dispatches; the tests deliver the
recorded runs themselves through ``runtime.execute_run``, in random orders, with
random outcomes, duplicate deliveries, redelivered completions and a dispatch
that fails right after the completion was recorded. After every step:

* a swarm's counters add up: running + queued + succeeded + failed = admitted,
  and running never exceeds ``max_concurrency`` (nor do the members the engine
  holds in flight);
* no signature's body completes twice (a redelivery or a duplicate never runs a
  finished or running body again), so each callback runs at most once;
* once a swarm failed, no new member starts (members claimed before may still
  be dispatched by a redelivery);
* a container completes at most once (one success or one error callback), and
  exactly once when everything has been delivered.
"""

from __future__ import annotations

import itertools
import os
import random
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import mageflow
import pytest
from mageflow import (
    DescribeRequest,
    DispatchRequest,
    DispatchResult,
    EngineError,
    MageflowRuntime,
    RunRequest,
    SwarmClosedError,
    SwarmConfig,
    TaskDescription,
)
from mageflow import _worker as worker
from mageflow.engine import CancelRequest, TaskManager
from pydantic import BaseModel

from tests.integration._helpers import Raw, swarm_counters
from tests.integration.container_models import Loose, Num, Prev, Results

SEEDS = range(int(os.environ.get("MAGEFLOW_TEST_SEEDS", "40")))

_MODELS: dict[str, type[BaseModel]] = {
    "work": Num,
    "step": Prev,
    "collect": Results,
    "on_error": Loose,
}


async def _unset_body(arg: Any, sig: Any) -> Any:
    raise AssertionError("each delivery gets its body with dataclasses.replace")


class Boom(Exception):
    """A final failure of a task body."""


class Transient(Exception):
    """A failure the engine retries (same run id)."""


class StubEngine(TaskManager):
    """Records dispatches; fails one dispatch on demand."""

    def __init__(self) -> None:
        self.sent: list[DispatchRequest] = []
        self.cancelled: list[CancelRequest] = []
        self.fail_when: Callable[[DispatchRequest], bool] | None = None
        self.failures = 0
        self.on_cancel: Callable[[str], None] | None = None

    async def dispatch(self, request: DispatchRequest) -> DispatchResult:
        if self.fail_when is not None and self.fail_when(request):
            self.fail_when = None
            self.failures += 1
            raise RuntimeError("engine connection lost")
        self.sent.append(request)
        return DispatchResult(run_id=None)

    async def cancel(self, request: CancelRequest) -> None:
        self.cancelled.append(request)
        if self.on_cancel is not None:
            self.on_cancel(request.run_id)

    def describe(self, request: DescribeRequest) -> TaskDescription | None:
        if isinstance(request.task, str) and request.task in _MODELS:
            return TaskDescription(name=request.task, input_model=_MODELS[request.task])
        return None

    async def wait_idle(self, timeout: float = 0) -> None:
        return None


@pytest.fixture
def manager() -> StubEngine:
    return StubEngine()


@dataclass
class Delivery:
    request: RunRequest
    transient: int = 0


@dataclass
class Swarmed:
    key: str
    cap: int
    members: list[str] = field(default_factory=list)
    ahead: int = 0  # SwarmConfig.prefetch


class Driver:
    """Delivers what the stub recorded, and checks the invariants after each step."""

    def __init__(self, rt: MageflowRuntime, stub: StubEngine, rng: random.Random) -> None:
        self.rt = rt
        self.stub = stub
        self.rng = rng
        self.inflight: list[Delivery] = []
        self.completed: list[Delivery] = []
        self.runs = itertools.count()
        self.finals: Counter[str] = Counter()  # bodies that ended (success or final failure)
        self.results: dict[str, Any] = {}
        self.inputs: dict[str, Any] = {}
        self.collected: dict[str, list[Any]] = defaultdict(list)
        self.errors: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.swarms: list[Swarmed] = []
        self.failed_swarms: dict[str, int] = {}  # failed swarm -> members started
        self.p_transient = 0.0
        self.p_crash = 0.0
        self.p_duplicate = 0.0
        self.p_redeliver = 0.0

    # -- engine ------------------------------------------------------------------------

    def absorb(self) -> None:
        """Turn recorded dispatches into runs waiting for delivery."""
        sent, self.stub.sent = self.stub.sent, []
        for req in sent:
            self.inflight.append(self._delivery(req.signature_key, req.dispatch_id, req.input))

    def _delivery(self, key: str, did: str, payload: dict[str, Any]) -> Delivery:
        run = RunRequest(
            signature_key=key,
            dispatch_id=did,
            run_id=f"run-{next(self.runs)}",
            payload=payload,
            body=_unset_body,
        )
        transient = 1 if self.rng.random() < self.p_transient else 0
        return Delivery(run, transient)

    def request_for(self, d: Delivery) -> RunRequest:
        return replace(d.request, body=self.body_for(d), is_final_failure=_final)

    def body_for(self, d: Delivery) -> Callable[[Any, Any], Awaitable[Any]]:
        async def body(arg: Any, sig: Any) -> Any:
            if d.transient:
                d.transient -= 1
                raise Transient("retry me")
            key = sig.key
            self.finals[key] += 1
            self.inputs[key] = arg.model_dump() if isinstance(arg, BaseModel) else arg
            name = sig.task_name
            if name == "work":
                if arg.fail:
                    raise Boom(f"work {arg.x}")
                value: Any = arg.x * 10
            elif name == "step":
                if arg.fail:
                    raise Boom("step")
                value = int(arg.prev) + arg.add
            elif name == "collect":
                self.collected[key].append(arg.mageflow_results)
                value = None
            elif name == "on_error":
                self.errors[key].append(arg.model_dump())
                value = None
            else:
                raise AssertionError(f"unexpected task {name}")
            self.results[key] = value
            return value

        return body

    async def deliver(self, d: Delivery) -> None:
        crash = self.rng.random() < self.p_crash
        if crash:
            self.stub.fail_when = lambda _req: True
        try:
            await self.rt.execute_run(self.request_for(d))
        except Transient:
            return  # stays in flight: the engine retries the same run
        except EngineError:
            return  # the completion was recorded, a dispatch was lost: redelivered later
        except Boom:
            pass
        finally:
            self.stub.fail_when = None
            self.absorb()
        self.inflight.remove(d)
        self.completed.append(d)

    async def redeliver(self) -> None:
        """The engine delivers a finished run again (same run id)."""
        d = self.rng.choice(self.completed)
        before = dict(self.finals)
        outcome = await self.rt.execute_run(self.request_for(d))
        assert not outcome.ran
        assert dict(self.finals) == before
        self.absorb()

    def cancel(self, run_id: str) -> None:
        """The engine drops a run (interrupt): it is never delivered again."""
        self.inflight = [d for d in self.inflight if d.request.run_id != run_id]

    def duplicate(self) -> None:
        """The engine delivers a dispatch twice (a new run id, same dispatch id)."""
        d = self.rng.choice(self.inflight + self.completed)
        r = d.request
        self.inflight.append(self._delivery(r.signature_key, r.dispatch_id, r.payload))

    async def step(self) -> None:
        roll = self.rng.random()
        if self.completed and roll < self.p_redeliver:
            await self.redeliver()
        elif roll < self.p_redeliver + self.p_duplicate and (self.inflight or self.completed):
            self.duplicate()
        elif self.inflight:
            await self.deliver(self.rng.choice(self.inflight))
        await self.check()

    async def drain(self, limit: int = 5000) -> None:
        for _ in range(limit):
            if not self.inflight:
                return
            await self.step()
        raise AssertionError("runs kept coming")

    # -- invariants --------------------------------------------------------------------

    async def check(self) -> None:
        over = {k: n for k, n in self.finals.items() if n > 1}
        assert not over, f"bodies completed more than once: {over}"
        client = self.rt.store.client
        keys = self.rt.store.keys
        for sw in self.swarms:
            f = await client.hmget(keys.sig(sw.key), ["n", "run", "ok", "bad", "skp", "s"])
            n, run, ok, bad, skipped = (int(v or 0) for v in f[:5])
            # queued members a failure skipped left the queue
            queued = await client.llen(keys.swarm_queue(sw.key)) + skipped
            assert run + queued + ok + bad == n, (sw.key, run, queued, ok, bad, n)
            # claimed: the cap and the prefetch; begun: the cap
            assert 0 <= run <= sw.cap + sw.ahead, (sw.key, run, sw.cap, sw.ahead)
            busy = await client.scard(keys.swarm_busy(sw.key))
            assert busy <= sw.cap, (sw.key, busy, sw.cap)
            assert n == len(sw.members)
            if f[5] == "failed":
                # nothing new starts once a swarm failed: its queue is never popped
                # again, and a member claimed before whose run had not begun is
                # skipped when its run arrives (counted with the skipped)
                started = self.failed_swarms.setdefault(sw.key, n - queued)
                assert n - queued <= started, (sw.key, "started a member after failing")
            statuses = await self._statuses({d.request.signature_key for d in self.inflight})
            held = {
                d.request.signature_key
                for d in self.inflight
                if d.request.signature_key in sw.members
                and statuses[d.request.signature_key] not in ("done", "failed")
            }
            assert len(held) <= sw.cap + sw.ahead, (sw.key, held)
        for key, got in itertools.chain(self.collected.items(), self.errors.items()):
            assert len(got) <= 1, f"callback {key} ran {len(got)} times"

    async def dump(self) -> dict[str, Any]:
        """Every signature not finished, with its status fields (for failure messages)."""
        client = self.rt.store.client
        out: dict[str, Any] = {}
        async for k in client.scan_iter(match=f"{self.rt.store.keys.sig_prefix}*"):
            h = await client.hgetall(k)
            if h.get("s") not in ("done", "failed"):
                fields = (
                    "kind",
                    "t",
                    "s",
                    "ls",
                    "d",
                    "r",
                    "m",
                    "pm",
                    "p",
                    "pi",
                    "st",
                    "pst",
                    "run",
                    "n",
                )
                out[k.rsplit(":", 1)[-1]] = {f: h[f] for f in fields if f in h}
        return out

    async def _statuses(self, keys: set[str]) -> dict[str, Any]:
        client = self.rt.store.client
        return {key: await client.hget(self.rt.store.keys.sig(key), "s") for key in keys}


def _final(exc: BaseException) -> bool:
    return not isinstance(exc, Transient)


def _driver(runtime: MageflowRuntime, manager: StubEngine, seed: int) -> Driver:
    rng = random.Random(seed)
    drv = Driver(runtime, manager, rng)
    drv.p_transient = rng.choice([0.0, 0.2])
    drv.p_crash = rng.choice([0.0, 0.15, 0.3])
    drv.p_duplicate = rng.choice([0.0, 0.1])
    drv.p_redeliver = rng.choice([0.0, 0.1, 0.2])
    return drv


async def _status(key: str) -> str:
    sig = await mageflow.load_signature(key)
    assert sig is not None
    return sig.status.value


# -- randomized ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
async def test_random_swarm_interleavings(
    runtime: MageflowRuntime, manager: StubEngine, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    drv = _driver(runtime, manager, seed)
    rng = drv.rng
    # runs sent ahead of free places; one that finds every place taken hands
    # its claim back at once (deliveries here are one at a time: waiting for
    # a place would only wait). Its own generator: the other seeds' draws stay.
    ahead = random.Random(seed * 7919).choice([0, 0, 1, 3])
    monkeypatch.setattr(worker, "_PLACE_WAIT", 0.0)
    cap = rng.randint(1, 4)
    threshold = rng.choice([None, None, 1, 2, 3])
    p_fail = rng.choice([0.0, 0.25, 0.5, 1.0])
    ok = await mageflow.asign("collect")
    err = await mageflow.asign("on_error")
    sw = await mageflow.aswarm(
        success_callbacks=[ok],
        error_callbacks=[err],
        config=SwarmConfig(max_concurrency=cap, stop_after_n_failures=threshold, prefetch=ahead),
    )
    tracked = Swarmed(sw.key, cap, ahead=ahead)
    drv.swarms.append(tracked)
    start_msg = Num(x=1000)
    expected: dict[str, Any] = {}  # member key -> its value, None if it fails

    batches = [rng.randint(0, 4) for _ in range(rng.randint(1, 3))]
    control: list[Any] = [("add", b) for b in batches]
    control.insert(rng.randint(0, len(control)), ("start", None))
    control.append(("close", None))
    counter = itertools.count()

    async def act(what: str, size: int | None) -> None:
        if what == "start":
            await sw.aio_run_no_wait(start_msg)
        elif what == "close":
            await sw.close_swarm()
        else:
            assert size is not None
            own = rng.random() < 0.7
            msgs = [Num(x=next(counter), fail=rng.random() < p_fail) for _ in range(size)]
            if own:
                call = sw.aio_run_tasks_in_swarm(["work"] * size, msgs)
            else:
                call = sw.aio_run_in_swarm(["work"] * size)
            try:
                keys = await call
            except SwarmClosedError:
                assert sw.key in drv.failed_swarms or await _status(sw.key) == "failed"
                return
            for key, msg in zip(keys, msgs, strict=True):
                tracked.members.append(key)
                if own:
                    expected[key] = None if msg.fail else msg.x * 10
                else:
                    expected[key] = start_msg.x * 10
        drv.absorb()
        await drv.check()

    while control or drv.inflight:
        if control and (not drv.inflight or rng.random() < 0.25):
            await act(*control.pop(0))
        else:
            await drv.step()

    counters = await swarm_counters(runtime.store, sw.key)
    status = await _status(sw.key)
    ran = [k for k in tracked.members if drv.finals[k]]
    failed = [k for k in ran if drv.results.get(k) is None]
    assert counters["running"] == 0
    assert counters["succeeded"] + counters["failed"] == len(ran)
    assert counters["failed"] == len(failed)
    assert len(drv.collected[ok.key]) + len(drv.errors[err.key]) == 1
    if threshold is not None and len(failed) >= threshold:
        assert status == "failed"
        assert len(failed) < threshold + cap  # no new member after the threshold
    elif ran and not set(ran) - set(failed):
        assert status == "failed"  # all failed, no threshold reached: documented as failed
    else:
        assert status == "done"
        assert len(ran) == len(tracked.members)
        assert drv.collected[ok.key] == [[expected[k] for k in tracked.members]]
    if status == "failed":
        (got,) = drv.errors[err.key]
        if threshold is not None and len(failed) >= threshold:
            assert got["fail"] is True  # the input of the member that reached it
        else:
            assert got["x"] == start_msg.x  # all failed: the swarm's message


@pytest.mark.parametrize("seed", SEEDS)
async def test_random_chain_interleavings(
    runtime: MageflowRuntime, manager: StubEngine, seed: int
) -> None:
    drv = _driver(runtime, manager, seed)
    rng = drv.rng
    length = rng.randint(2, 6)
    fail_at = rng.choice([None, None, *range(length)])
    steps = [await mageflow.asign("work", fail=fail_at == 0)]
    for i in range(1, length):
        steps.append(await mageflow.asign("step", add=i, fail=fail_at == i))
    ok = await mageflow.asign("collect")
    err = await mageflow.asign("on_error")
    ch = await mageflow.achain(steps, success=[ok], error=[err], tag="chain")
    await ch.aio_run_no_wait(Num(x=1))
    drv.absorb()
    await drv.drain()

    ran = [s.key for s in steps if drv.finals[s.key]]
    if fail_at is None:
        assert ran == [s.key for s in steps]
        assert drv.collected[ok.key] == [10 + sum(range(length))]
        assert drv.errors[err.key] == []
        assert await _status(ch.key) == "done"
    else:
        assert ran == [s.key for s in steps[: fail_at + 1]]
        (got,) = drv.errors[err.key]
        assert got["fail"] is True and got["tag"] == "chain"
        assert drv.collected[ok.key] == []
        assert await _status(ch.key) == "failed"


async def _build(
    drv: Driver, depth: int, p_fail: float, kinds: tuple[str, ...] = ("task", "chain", "swarm")
) -> tuple[Any, Any]:
    """A random member: a signature and its expected value (None when it fails)."""
    rng = drv.rng
    kind = rng.choice(kinds if depth < 2 else ("task",))
    if kind == "task":
        x, fail = rng.randint(0, 9), rng.random() < p_fail
        return await mageflow.asign("work", x=x, fail=fail), None if fail else x * 10
    if kind == "chain":
        x, fail0 = rng.randint(0, 9), rng.random() < p_fail
        steps = [await mageflow.asign("work", x=x, fail=fail0)]
        value: Any = None if fail0 else x * 10
        for i in range(rng.randint(1, 3)):
            fail = rng.random() < p_fail
            steps.append(await mageflow.asign("step", add=i + 1, fail=fail))
            value = None if value is None or fail else value + i + 1
        return await mageflow.achain(steps), value
    cap = rng.randint(1, 3)
    parts = [await _build(drv, depth + 1, p_fail, kinds) for _ in range(rng.randint(0, 3))]
    inner = await mageflow.aswarm(
        tasks=[p[0] for p in parts], config=SwarmConfig(max_concurrency=cap)
    )
    await inner.close_swarm()
    drv.swarms.append(Swarmed(inner.key, cap, await drv.rt.store.members(inner)))
    values = [p[1] for p in parts]
    all_failed = bool(values) and all(v is None for v in values)
    return inner, None if all_failed else values


async def _top(drv: Driver, p_fail: float) -> tuple[Any, list[Any], Any, Any]:
    """A closed swarm of random members with callbacks, started."""
    cap = drv.rng.randint(1, 3)
    parts = [await _build(drv, 0, p_fail) for _ in range(drv.rng.randint(1, 5))]
    ok = await mageflow.asign("collect")
    err = await mageflow.asign("on_error")
    top = await mageflow.aswarm(
        tasks=[p[0] for p in parts],
        success_callbacks=[ok],
        error_callbacks=[err],
        config=SwarmConfig(max_concurrency=cap),
    )
    drv.swarms.append(Swarmed(top.key, cap, await drv.rt.store.members(top)))
    return top, [p[1] for p in parts], ok, err


def _deliver_during_transitions(
    runtime: MageflowRuntime, drv: Driver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before some member transitions of a recursive lifecycle event, the engine
    delivers a run: completions interleave with suspend/interrupt/resume."""
    original = runtime.store.transition
    busy = False

    async def transition(*args: Any) -> Any:
        nonlocal busy
        drv.absorb()
        if not busy and drv.inflight and drv.rng.random() < 0.4:
            busy = True
            try:
                if drv.rng.random() < 0.5:
                    await drv.deliver(drv.inflight[-1])  # e.g. a run resume just replayed
                    await drv.check()
                else:
                    await drv.step()
            finally:
                busy = False
        return await original(*args)

    monkeypatch.setattr(runtime.store, "transition", transition)


async def _check_outcome(drv: Driver, top: Any, values: list[Any], ok: Any, err: Any) -> None:
    for sw in drv.swarms:
        counters = await swarm_counters(drv.rt.store, sw.key)
        assert counters["running"] == 0 and counters["admitted"] == len(sw.members)
    assert len(drv.collected[ok.key]) + len(drv.errors[err.key]) == 1
    if all(v is None for v in values):
        assert await _status(top.key) == "failed"
    else:
        assert drv.collected[ok.key] == [values]
        assert await _status(top.key) == "done"


@pytest.mark.parametrize("seed", SEEDS)
async def test_random_nested_interleavings(
    runtime: MageflowRuntime, manager: StubEngine, seed: int
) -> None:
    drv = _driver(runtime, manager, seed)
    top, values, ok, err = await _top(drv, drv.rng.choice([0.0, 0.2, 0.5]))
    await top.aio_run_no_wait(Num(x=0))
    drv.absorb()
    if drv.rng.random() < 0.5:
        await drv.step()
    await top.close_swarm()
    drv.absorb()
    await drv.drain()
    await _check_outcome(drv, top, values, ok, err)


@pytest.mark.parametrize("seed", SEEDS)
async def test_random_lifecycle_interleavings(
    runtime: MageflowRuntime, manager: StubEngine, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """suspend / interrupt / resume of the top container at random moments, with runs
    delivered while the event walks the members: after a final resume everything
    completes, no body completes twice, nothing is lost."""
    drv = _driver(runtime, manager, seed)
    rng = drv.rng
    manager.on_cancel = drv.cancel
    _deliver_during_transitions(runtime, drv, monkeypatch)
    top, values, ok, err = await _top(drv, rng.choice([0.0, 0.2]))
    await top.close_swarm()
    await top.aio_run_no_wait(Num(x=0))
    drv.absorb()
    for _ in range(5000):
        roll = rng.random()
        try:
            if roll < 0.08:
                await top.suspend()
            elif roll < 0.12:
                await top.interrupt()
            elif roll < 0.25:
                await top.resume()
        except mageflow.InvalidTransitionError:
            pass  # e.g. suspending an interrupted container, or a finished one
        drv.absorb()
        await drv.check()
        if drv.inflight:
            await drv.step()
        elif await _status(top.key) in ("done", "failed"):
            break
        else:
            await top.resume()
            drv.absorb()
            if not drv.inflight and await _status(top.key) not in ("done", "failed"):
                stuck = await drv.dump()
                raise AssertionError(f"stuck after resume: {stuck}")
    else:
        raise AssertionError("the container never finished")
    await _check_outcome(drv, top, values, ok, err)


# -- redelivered completions ----------------------------------------------------------


async def test_finish_twice_changes_nothing_and_returns_the_same_outbox(
    runtime: MageflowRuntime, manager: StubEngine, raw: Raw
) -> None:
    drv = Driver(runtime, manager, random.Random(0))
    ok = await mageflow.asign("collect")
    sw = await mageflow.aswarm(success_callbacks=[ok], config=SwarmConfig(max_concurrency=1))
    drv.swarms.append(Swarmed(sw.key, 1))
    drv.swarms[0].members = await sw.aio_run_tasks_in_swarm(["work"] * 2, [Num(x=1), Num(x=2)])
    await sw.aio_run_no_wait()
    drv.absorb()
    (first,) = drv.inflight
    await drv.deliver(first)
    (second,) = drv.inflight

    before = await raw.snapshot()
    code, outbox = await runtime.store.finish(
        first.request.signature_key, succeeded=True, run_id=first.request.run_id, payload=10
    )
    assert code == "already"
    assert [e.key for e in outbox] == [second.request.signature_key]
    assert [e.dispatch_id for e in outbox] == [second.request.dispatch_id]
    assert await raw.snapshot() == before
    assert await swarm_counters(runtime.store, sw.key) == {
        "admitted": 2,
        "running": 1,
        "succeeded": 1,
        "failed": 0,
    }
    # a different outcome for the same run is refused, too
    code, outbox = await runtime.store.finish(
        first.request.signature_key, succeeded=False, run_id=first.request.run_id, payload="x"
    )
    assert (code, outbox) == ("invalid", [])
    assert await raw.snapshot() == before


async def test_redelivered_completion_dispatches_duplicates_that_skip_themselves(
    runtime: MageflowRuntime, manager: StubEngine
) -> None:
    drv = Driver(runtime, manager, random.Random(0))
    ok = await mageflow.asign("collect")
    ch = await mageflow.achain(["work", "step", "step"], success=[ok])
    await ch.aio_run_no_wait(Num(x=1))
    drv.absorb()
    (first,) = drv.inflight
    await drv.deliver(first)
    (second,) = drv.inflight

    outcome = await runtime.execute_run(drv.request_for(first))
    assert (outcome.ran, outcome.reason) == (False, "drained")
    drv.absorb()
    dup = drv.inflight[-1]
    assert dup.request.dispatch_id == second.request.dispatch_id
    await drv.deliver(second)
    outcome = await runtime.execute_run(drv.request_for(dup))
    assert (outcome.ran, outcome.reason) == (False, "finished")
    drv.inflight.remove(dup)
    drv.absorb()
    await drv.drain()
    assert drv.collected[ok.key] == [12]
    assert set(drv.finals.values()) == {1}


# -- a crash between the state change and the dispatch ----------------------------------


async def test_lost_member_dispatch_is_redone_by_the_redelivery(
    runtime: MageflowRuntime, manager: StubEngine
) -> None:
    drv = Driver(runtime, manager, random.Random(0))
    ok = await mageflow.asign("collect")
    sw = await mageflow.aswarm(success_callbacks=[ok], config=SwarmConfig(max_concurrency=1))
    tracked = Swarmed(sw.key, 1)
    drv.swarms.append(tracked)
    tracked.members = await sw.aio_run_tasks_in_swarm(["work"] * 3, [Num(x=i) for i in range(3)])
    await sw.close_swarm()
    await sw.aio_run_no_wait()
    drv.absorb()
    (first,) = drv.inflight

    manager.fail_when = lambda req: req.signature_key == tracked.members[1]
    with pytest.raises(EngineError, match="engine connection lost"):
        await runtime.execute_run(drv.request_for(first))
    drv.absorb()
    assert drv.inflight == [first] and manager.failures == 1
    assert await swarm_counters(runtime.store, sw.key) == {
        "admitted": 3,
        "running": 1,  # the claimed member counts as running: it is owed a dispatch
        "succeeded": 1,
        "failed": 0,
    }
    await drv.check()

    outcome = await runtime.execute_run(drv.request_for(first))
    assert (outcome.ran, outcome.reason) == (False, "drained")
    drv.inflight.remove(first)
    drv.absorb()
    assert [d.request.signature_key for d in drv.inflight] == [tracked.members[1]]
    await drv.drain()
    assert drv.collected[ok.key] == [[0, 10, 20]]
    assert drv.finals[first.request.signature_key] == 1


async def test_lost_callback_dispatch_is_redone_once(
    runtime: MageflowRuntime, manager: StubEngine
) -> None:
    drv = Driver(runtime, manager, random.Random(0))
    ok = await mageflow.asign("collect")
    ok2 = await mageflow.asign("collect")
    sw = await mageflow.aswarm(tasks=["work", "work"], success_callbacks=[ok, ok2])
    await sw.close_swarm()
    await sw.aio_run_no_wait(Num(x=3))
    drv.absorb()
    a, b = drv.inflight
    await drv.deliver(a)

    manager.fail_when = lambda req: req.signature_key == ok2.key
    with pytest.raises(EngineError):
        await runtime.execute_run(drv.request_for(b))
    drv.absorb()
    # the first callback went out before the failure; the redelivery sends both again
    assert [d.request.signature_key for d in drv.inflight] == [b.request.signature_key, ok.key]
    await runtime.execute_run(drv.request_for(b))
    drv.inflight.remove(b)
    drv.absorb()
    await drv.drain()
    assert drv.collected[ok.key] == [[30, 30]]
    assert drv.collected[ok2.key] == [[30, 30]]
    assert set(drv.finals.values()) == {1}


async def test_lost_start_of_a_nested_swarm_is_redone(
    runtime: MageflowRuntime, manager: StubEngine
) -> None:
    """A chain step finished and the next step, a swarm, was started (its members
    claimed), but dispatching a member failed. The step's redelivery must still get
    the swarm's members dispatched."""
    drv = Driver(runtime, manager, random.Random(0))
    ok = await mageflow.asign("collect")
    inner = await mageflow.aswarm(tasks=["step", "step"], is_swarm_closed=True)
    members = await runtime.store.members(inner)
    drv.swarms.append(Swarmed(inner.key, 30, members))
    ch = await mageflow.achain(["work", inner], success=[ok])
    await ch.aio_run_no_wait(Num(x=1))
    drv.absorb()
    (first,) = drv.inflight

    manager.fail_when = lambda req: req.signature_key == members[1]
    with pytest.raises(EngineError):
        await runtime.execute_run(drv.request_for(first))
    await runtime.execute_run(drv.request_for(first))
    drv.inflight.remove(first)
    drv.absorb()
    assert members[1] in {d.request.signature_key for d in drv.inflight}
    await drv.drain()
    assert drv.collected[ok.key] == [[11, 11]]


@pytest.mark.parametrize("seed", range(10))
async def test_crash_after_finish_then_redelivery(
    runtime: MageflowRuntime, manager: StubEngine, seed: int
) -> None:
    """Every delivery's dispatches fail once; every run is redelivered until drained."""
    drv = _driver(runtime, manager, seed)
    drv.p_crash = 0.5
    ok = await mageflow.asign("collect")
    err = await mageflow.asign("on_error")
    cap = drv.rng.randint(1, 3)
    sw = await mageflow.aswarm(
        success_callbacks=[ok], error_callbacks=[err], config=SwarmConfig(max_concurrency=cap)
    )
    tracked = Swarmed(sw.key, cap)
    drv.swarms.append(tracked)
    tracked.members = await sw.aio_run_tasks_in_swarm(
        ["work"] * 6, [Num(x=i, fail=i == 2) for i in range(6)]
    )
    await sw.close_swarm()
    await sw.aio_run_no_wait()
    drv.absorb()
    await drv.drain()
    assert drv.collected[ok.key] == [[0, 10, None, 30, 40, 50]]
    assert drv.errors[err.key] == []


async def test_a_member_that_cannot_be_claimed_is_skipped_and_leaves_none(
    runtime: MageflowRuntime, manager: StubEngine
) -> None:
    """A member already finished (or removed) when its turn comes is not started and
    is counted nowhere: running + queued + succeeded + failed + unclaimed = admitted."""
    drv = Driver(runtime, manager, random.Random(0))
    ok = await mageflow.asign("collect")
    finished = await mageflow.asign("work")
    await finished.aio_run_no_wait(Num(x=5))
    drv.absorb()
    await drv.drain()
    sw = await mageflow.aswarm(tasks=[finished, "work"], success_callbacks=[ok])
    await sw.close_swarm()
    await sw.aio_run_no_wait(Num(x=1))
    drv.absorb()
    assert finished.key not in {d.request.signature_key for d in drv.inflight}
    await drv.drain()
    assert drv.collected[ok.key] == [[None, 10]]
    assert await swarm_counters(runtime.store, sw.key) == {
        "admitted": 2,
        "running": 0,
        "succeeded": 1,
        "failed": 0,
    }
