"""The fault-injection harness: a workload of signatures, faults, and the checks after settling.

Invariants checked once everything has settled (``Harness.verdict``):

* every signature the workload created is terminal (``done``/``failed``);
* a root expected to succeed is ``done``, its success callback ran in exactly
  one engine run and its error callback never; a root expected to fail is
  ``failed`` and the reverse holds;
* every chain step and swarm member ran in exactly one engine run (a
  redelivery of the same run after a kill may repeat the body: that is the
  same run id), and its container is ``done`` with its callback run once.

A signature whose engine run ended without reporting back (lost with its
worker on the engine's last attempt) is the reconciler's case: the workers
run it, and by its table such a signature fails ("... in the engine") and its
error callback fires once. It is counted as ``needs_reconciler``, not as a
MageFlow failure, and the figures say how many, but only after the engine is
asked: a signature the reconciler failed while its run (or a member's) went
on and completed is ``wrong``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mageflow
from hatchet_sdk.clients.rest.models.v1_task_status import V1TaskStatus
from mageflow import DispatchPendingError
from mageflow._store.keys import F
from mageflow.engine import DispatchRequest, DispatchResult

from tests.chaos._valkey import ValkeyProcess
from tests.chaos.chaos_app import ChaosApp, Work
from tests.e2e._engine import Engine
from tests.e2e._worker import WorkerProcess

TERMINAL = {"done", "failed", "canceled", "skipped"}


@dataclass
class Expectation:
    key: str
    outcome: str  # "done" | "failed"
    ok_callback: str | None = None
    err_callback: str | None = None
    members: list[str] = field(default_factory=list)


@dataclass
class Figures:
    signatures: int = 0
    kills: int = 0
    redis_restarts: int = 0
    redis_pauses: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    needs_reconciler: list[str] = field(default_factory=list)
    unrecorded_failures: list[str] = field(default_factory=list)
    """roots that succeeded on one more attempt than their failures allow,
    because a body failure died with its worker before MageFlow recorded it"""

    def line(self) -> str:
        return (
            f"signatures={self.signatures} kills={self.kills} "
            f"redis_restarts={self.redis_restarts} redis_pauses={self.redis_pauses} "
            f"lost={len(self.lost)} duplicated={len(self.duplicated)} wrong={len(self.wrong)} "
            f"stuck={len(self.stuck)} needs_reconciler={len(self.needs_reconciler)} "
            f"unrecorded_failures={len(self.unrecorded_failures)}"
        )

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.wrong or self.stuck)


class Supervisor:
    """Restarts workers that died (crash points, kills) and SIGKILLs busy ones at random when asked.

    It never blocks on a restart: a worker takes seconds to start under load,
    and meanwhile the others are still killed. A random kill picks a worker
    that is healthy and has received runs since it started, so each kill
    interrupts a worker doing MageFlow work.
    """

    def __init__(
        self, workers: Sequence[WorkerProcess], figures: Figures, ready_timeout: float = 90.0
    ) -> None:
        self.workers = list(workers)
        self.figures = figures
        self.kill_every: tuple[float, float] | None = None
        self.ready_timeout = ready_timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="chaos-supervisor", daemon=True)
        self._next_kill = 0.0
        now = time.monotonic()
        # the harness starts the workers and waits until they are ready
        self._started = dict.fromkeys(range(len(self.workers)), now)
        self._ready = set(range(len(self.workers)))
        self._busy: set[int] = set()
        self._log_pos = dict.fromkeys(range(len(self.workers)), 0)
        self._slow: set[int] = set()

    def start(self) -> Supervisor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _schedule(self) -> None:
        if self.kill_every is not None:
            self._next_kill = time.monotonic() + random.uniform(*self.kill_every)

    def _received_run(self, i: int) -> bool:
        w = self.workers[i]
        try:
            with w.log_path.open("rb") as f:
                f.seek(self._log_pos[i])
                chunk = f.read()
        except OSError:
            return False
        # keep a tail, in case the line is still being written
        self._log_pos[i] += max(0, len(chunk) - 200)
        return b"rx: start step run" in chunk

    def _restart(self, i: int) -> None:
        w = self.workers[i]
        self._ready.discard(i)
        self._busy.discard(i)
        try:
            self._log_pos[i] = w.log_path.stat().st_size
        except OSError:
            self._log_pos[i] = 0
        self._started[i] = time.monotonic()
        w.start(wait=False)

    def _watch(self) -> None:
        for i, w in enumerate(self.workers):
            if w.proc is None:
                continue
            if not w.running:
                if i in self._slow:
                    self._slow.discard(i)
                else:
                    self.figures.kills += 1
                self._restart(i)
            elif i not in self._ready:
                if w.healthy():
                    self._ready.add(i)
                elif time.monotonic() - self._started[i] > self.ready_timeout:
                    self._slow.add(i)  # a start stuck under load: again, not a kill
                    w.kill()
            elif i not in self._busy and self._received_run(i):
                self._busy.add(i)

    def _loop(self) -> None:
        self._schedule()
        while not self._stop.is_set():
            self._watch()
            if self.kill_every is not None and time.monotonic() >= self._next_kill:
                busy = [i for i in self._busy if self.workers[i].running]
                if busy:
                    self.workers[random.choice(busy)].kill()
                    self._schedule()
            self._stop.wait(0.2)


class Harness:
    def __init__(
        self,
        engine: Engine,
        valkey: ValkeyProcess,
        observer_url: str,
        *,
        workers: int = 1,
        crash: str = "",
        crash_once_per: str = "signature",
        lost_worker_attempts: int = 3,
        suffix: str = "",
    ) -> None:
        self.engine = engine
        self.valkey = valkey
        self.prefix = f"chaos:{uuid.uuid4().hex[:8]}:"
        # a suffix of its own on the task names lets harnesses run at once
        self.app = ChaosApp(engine.client(), valkey.url, observer_url, self.prefix, suffix=suffix)
        self.work, self.step = self.app.tasks["work"].name, self.app.tasks["step"].name
        self.mf = self.app.mf
        self.figures = Figures()
        self.expect: list[Expectation] = []
        self._terminal: set[str] = set()
        self.swarms = 0
        once_dir = self.once_dir = tempfile.mkdtemp(prefix="mageflow-chaos-once-")
        env = {
            "REDIS_URL": valkey.url,
            "CHAOS_OBSERVER_URL": observer_url,
            "CHAOS_PREFIX": self.prefix,
            "CHAOS_LOST_WORKER_ATTEMPTS": str(lost_worker_attempts),
            "CHAOS_SUFFIX": suffix,
        }
        if crash:
            env["MAGEFLOW_TEST_CRASH"] = crash
            env["MAGEFLOW_TEST_CRASH_ONCE_DIR"] = once_dir
            env["MAGEFLOW_TEST_CRASH_ONCE_PER"] = crash_once_per
        self.workers = [
            WorkerProcess(
                "tests.chaos.chaos_worker", engine.worker_env(env), name=f"chaos{suffix}-{i}"
            )
            for i in range(workers)
        ]
        self.supervisor = Supervisor(self.workers, self.figures)

    async def __aenter__(self) -> Harness:
        # this task's runtime (harnesses may run at once, in tasks of their own)
        self._active = self.mf.runtime.activate()
        self._active.__enter__()
        for w in self.workers:
            w.start(wait=False)
        for w in self.workers:
            await asyncio.to_thread(w.wait_ready)
        self.supervisor.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.supervisor.stop)
        for w in self.workers:
            await asyncio.to_thread(w.stop, 5)
        self._active.__exit__(None, None, None)

    # -- workload -----------------------------------------------------------------

    async def root(self, fail_times: int = 0, sleep: float = 0.0, hang_calls: int = 0) -> str:
        ok = await mageflow.asign(self.step, tag="ok")
        err = await mageflow.asign(self.step, tag="err")
        sig = await mageflow.asign(self.work, success_callbacks=[ok], error_callbacks=[err])
        await sig.aio_run_no_wait(
            Work(tag="root", fail_times=fail_times, sleep=sleep, hang_calls=hang_calls)
        )
        # retries=2 on the work task: a third failure is final
        outcome = "done" if fail_times <= 2 else "failed"
        self.expect.append(Expectation(sig.key, outcome, ok.key, err.key))
        return sig.key

    async def lost_root(self) -> str:
        """A root whose first send never reaches the engine: only the reconciler runs it.

        Its dispatch times out before the engine hears of it (MageFlow keeps
        the claim, with no run id, and says the run is queued for retry), so a
        worker's reconciler must re-send it.
        """
        ok = await mageflow.asign(self.step, tag="ok")
        err = await mageflow.asign(self.step, tag="err")
        sig = await mageflow.asign(self.work, success_callbacks=[ok], error_callbacks=[err])
        manager = self.mf.runtime.manager
        assert manager is not None
        real = manager.dispatch

        async def lost(request: DispatchRequest) -> DispatchResult:
            if request.signature_key == sig.key:
                raise TimeoutError("chaos: the dispatch never reached the engine")
            return await real(request)

        manager.dispatch = lost  # type: ignore[method-assign]
        try:
            await sig.aio_run_no_wait(Work(tag="lost-root"))
        except DispatchPendingError:
            pass
        finally:
            del manager.dispatch
        self.expect.append(Expectation(sig.key, "done", ok.key, err.key))
        return sig.key

    def crashed_at(self, point: str) -> bool:
        """Whether crash point ``point`` killed a worker (``crash_once_per="point"``)."""
        digest = hashlib.sha1(f"{point}|".encode()).hexdigest()
        return (Path(self.once_dir) / digest).exists()

    async def chain(self, steps: int = 3) -> str:
        members = [await mageflow.asign(self.step, tag=f"s{i}") for i in range(steps)]
        ok = await mageflow.asign(self.step, tag="chain-ok")
        chain = await mageflow.achain(members, success=[ok])
        await chain.aio_run_no_wait({"tag": "chain"})
        self.expect.append(Expectation(chain.key, "done", ok.key, None, [m.key for m in members]))
        return chain.key

    async def swarm(self, size: int = 4) -> str:
        # every other swarm sends members ahead of free places (issue 10): two
        # run, two wait in the engine or, on a worker with free slots, at BEGIN
        self.swarms += 1
        ahead = self.swarms % 2 == 1  # the first one too: short runs have one
        config = mageflow.SwarmConfig(max_concurrency=2, prefetch=2) if ahead else None
        size = size + 2 if ahead else size
        members = [await mageflow.asign(self.step, tag=f"m{i}") for i in range(size)]
        ok = await mageflow.asign(self.step, tag="swarm-ok")
        swarm = await mageflow.aswarm(
            tasks=members,
            success_callbacks=[ok],
            is_swarm_closed=True,
            **({"config": config} if config else {}),
        )
        await swarm.aio_run_no_wait({"tag": "swarm"})
        self.expect.append(Expectation(swarm.key, "done", ok.key, None, [m.key for m in members]))
        return swarm.key

    async def mixed(self, n: int) -> None:
        """n roots (some failing once or twice, some finally), plus chains and swarms."""
        for i in range(n):
            kind = i % 6
            if kind == 4:
                await self.chain()
            elif kind == 5:
                await self.swarm()
            else:
                await self.root(fail_times=(0, 1, 2, 3)[kind], sleep=random.uniform(0.2, 1.0))

    async def open_count(self) -> int:
        """How many roots, chains and swarms of the workload are not terminal yet."""
        keys = [e.key for e in self.expect if e.key not in self._terminal]
        st = await self.statuses(keys)
        self._terminal.update(k for k, v in st.items() if v in TERMINAL)
        return sum(1 for v in st.values() if v not in TERMINAL)

    # -- settling and checking ------------------------------------------------------

    def all_keys(self) -> list[str]:
        keys: list[str] = []
        for e in self.expect:
            keys.append(e.key)
            keys.extend(k for k in (e.ok_callback, e.err_callback) if k)
            keys.extend(e.members)
        return keys

    async def statuses(self, keys: Sequence[str]) -> dict[str, str | None]:
        client = self.mf.runtime.store.client
        pipe = client.pipeline(transaction=False)
        for k in keys:
            pipe.hget(self.mf.runtime.store.keys.sig(k), F.status)
        got = await pipe.execute()
        return dict(zip(keys, got, strict=True))

    async def _expected_terminal(self) -> dict[str, str | None]:
        st = await self.statuses([e.key for e in self.expect])
        # the callback the outcome fires is part of "settled" (the error
        # callback of a root the reconciler failed, though it should succeed)
        cbs = [
            e.ok_callback if st[e.key] == "done" else e.err_callback
            for e in self.expect
            if st[e.key] in ("done", "failed")
        ]
        st.update(await self.statuses([c for c in cbs if c]))
        return st

    async def settle(self, timeout: float) -> None:
        """Wait until every root and the callback it should fire is terminal (or timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                st = await self._expected_terminal()
            except Exception:
                await asyncio.sleep(0.5)
                continue
            if all(v in TERMINAL for v in st.values()):
                # let late duplicates (if any) show up before counting
                await asyncio.sleep(3)
                return
            await asyncio.sleep(0.5)

    async def engine_state(self, key: str) -> tuple[bool, str]:
        """Whether the signature's engine run ended without MageFlow hearing of it, and why."""
        store = self.mf.runtime.store
        run_id, dispatch = await store.client.hmget(store.keys.sig(key), [F.run, F.dispatch])
        if not run_id:
            return False, f"no run (dispatch {dispatch})"
        try:
            status = await self.mf.hatchet.runs.aio_get_status(run_id)
        except Exception as exc:
            return False, f"run {run_id}: {type(exc).__name__}"
        ended = (V1TaskStatus.FAILED, V1TaskStatus.CANCELLED, V1TaskStatus.COMPLETED)
        return status in ended, f"run {run_id} {status}"

    async def failed_by_engine(self, e: Expectation) -> tuple[bool, str]:
        """Whether ``e`` failed only because the engine gave up on runs (its own or its
        members'), so the reconciler had to fail them; never when a run went on."""
        store = self.mf.runtime.store
        failed = 0
        for key in e.members or [e.key]:
            status, error, run, engine_run = await store.client.hmget(
                store.keys.sig(key), [F.status, F.error, F.run, F.engine_run]
            )
            if status != "failed":
                continue
            if "in the engine" not in str(error):
                return False, f"{key} failed: {error}"
            run = run or engine_run
            try:
                state = await self.mf.hatchet.runs.aio_get_status(run)
            except Exception as exc:
                return False, f"{key}: run {run}: {type(exc).__name__}"
            if state is not V1TaskStatus.FAILED:
                return False, f"{key} failed by the reconciler, but run {run} is {state}"
            failed += 1
        return failed > 0, f"{failed} run(s) failed in the engine"

    async def failure_counts(self, key: str) -> tuple[int, int]:
        """Failures the body raised (the observer's count) and MageFlow recorded (FINISH)."""
        raised = int(await self.app.observer.get(f"{self.prefix}fails:{key}") or 0)
        store = self.mf.runtime.store
        recorded = int(await store.client.hget(store.keys.sig(key), F.failures) or 0)
        return raised, recorded

    async def failure_died_with_worker(self, key: str) -> bool:
        """Whether a body failure died with a killed worker before FINISH recorded it."""
        raised, recorded = await self.failure_counts(key)
        return self.figures.kills > 0 and raised > recorded

    async def ran(self, key: str) -> set[str]:
        return set(await self.app.observer.smembers(f"{self.prefix}ran:{key}"))

    async def verdict(self) -> Figures:
        fig = self.figures
        keys = self.all_keys()
        fig.signatures = len(keys)
        st = await self.statuses(keys)

        async def once(key: str, what: str) -> None:
            runs = await self.ran(key)
            if not runs:
                # the reconciler fails a signature whose run the engine gave up on
                gave_up, why = await self.failed_by_engine(Expectation(key, "done"))
                if gave_up:
                    fig.needs_reconciler.append(f"{what} {key} failed by the reconciler: {why}")
                elif "failed by the reconciler" in why:
                    fig.wrong.append(f"{what} {key}: {why}")
                else:
                    fig.lost.append(f"{what} {key} never ran")
            elif len(runs) > 1:
                fig.duplicated.append(f"{what} {key} ran in {len(runs)} runs")

        async def never(key: str, what: str) -> None:
            if await self.ran(key):
                fig.duplicated.append(f"{what} {key} ran but must not")

        for e in self.expect:
            s = st[e.key]
            if s not in TERMINAL:
                gave_up, why = await self.engine_state(e.key)
                (fig.needs_reconciler if gave_up else fig.stuck).append(f"{e.key} is {s}: {why}")
                continue
            if s != e.outcome:
                error = await self.mf.runtime.store.client.hget(
                    self.mf.runtime.store.keys.sig(e.key), F.error
                )
                if (s == "failed" and "in the engine" in str(error)) or e.members:
                    # the reconciler failed it (or a member): right only when
                    # the engine gave up on the run (lost with the worker on the
                    # engine's last attempt; docs/lifecycle.md), never when it
                    # ran on
                    gave_up, why = await self.failed_by_engine(e)
                    if s == "failed" and gave_up:
                        fig.needs_reconciler.append(f"{e.key} failed by the reconciler: {why}")
                        if e.err_callback:
                            await once(e.err_callback, "callback")
                        if e.ok_callback:
                            await never(e.ok_callback, "callback")
                    else:
                        fig.wrong.append(f"{e.key} is {s}, expected {e.outcome}: {why}")
                elif s == "done" and await self.failure_died_with_worker(e.key):
                    # a body failure whose worker was killed before FINISH
                    # recorded it: a lost worker spends no retry, so the root
                    # had one more attempt, which succeeded
                    raised, recorded = await self.failure_counts(e.key)
                    fig.unrecorded_failures.append(
                        f"{e.key} is done: the body raised {raised} failure(s), "
                        f"MageFlow recorded {recorded}"
                    )
                    if e.ok_callback:
                        await once(e.ok_callback, "callback")
                    if e.err_callback:
                        await never(e.err_callback, "callback")
                else:
                    fig.wrong.append(f"{e.key} is {s}, expected {e.outcome}")
                continue
            fire = e.ok_callback if e.outcome == "done" else e.err_callback
            quiet = e.err_callback if e.outcome == "done" else e.ok_callback
            if fire:
                await once(fire, "callback")
            if quiet:
                await never(quiet, "callback")
            for m in e.members:
                await once(m, "member")
        reported = {e.key for e in self.expect}
        for k in keys:
            s = st[k]
            # a callback that must not fire is skipped (or pending) by design
            if k not in reported and s is not None and s not in TERMINAL and s != "pending":
                gave_up, why = await self.engine_state(k)
                (fig.needs_reconciler if gave_up else fig.stuck).append(f"{k} left {s}: {why}")
        return fig


def long_run() -> bool:
    return os.environ.get("MAGEFLOW_CHAOS_LONG", "") not in ("", "0")


def report(name: str, fig: Figures, extra: str = "") -> str:
    line = f"chaos {name}: {fig.line()}" + (f" {extra}" if extra else "")
    print(line)
    path = os.environ.get("MAGEFLOW_CHAOS_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")
    return line


def details(fig: Figures) -> dict[str, Any]:
    return {
        "lost": fig.lost[:10],
        "duplicated": fig.duplicated[:10],
        "wrong": fig.wrong[:10],
        "stuck": fig.stuck[:10],
        "needs_reconciler": fig.needs_reconciler[:10],
        "unrecorded_failures": fig.unrecorded_failures[:10],
    }
