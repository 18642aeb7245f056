"""The adapter conformance kit: run MageFlow's contract tests against your engine adapter.

Subclass :class:`TaskManagerConformance` in your adapter's test suite and
override one fixture, ``conformance_runtime``: a ``MageflowRuntime`` built with
your ``TaskManager``, whose workers serve every task in
``mageflow.testing.conformance_tasks.CONFORMANCE_TASKS``, and which is active
(installed) for the test. pytest collects the inherited tests::

    class TestMyEngineConformance(TaskManagerConformance):
        @pytest.fixture
        async def conformance_runtime(self) -> AsyncIterator[MageflowRuntime]:
            ...

What is checked, end to end through your engine: signature → run →
callbacks; retries (callbacks after the final attempt only); ``NonRetryable``;
suspend → parked run → resume replays it once; interrupt of a running task;
a chain; a swarm under its concurrency cap; the same dispatch delivered twice
(body once); a worker crash between FINISH and the callbacks' dispatch
(``recover()`` sends them, once); cancel of a finished run is a no-op; an
unknown task refused with ``EngineError`` (unless ``refuses_unknown_tasks`` is
False). Needs pytest and
pytest-asyncio. ``conformance_timeout`` bounds each wait (override for slow
engines).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, ClassVar

import pytest
from thirdmagic.errors import EngineError
from thirdmagic.signature import Signature, SwarmConfig
from thirdmagic.status import PauseActionTypes, SignatureStatus

import mageflow
from mageflow._runtime import MageflowRuntime
from mageflow.engine import CancelRequest, DispatchRequest
from mageflow.testing._wait import wait_for_signature
from mageflow.testing.conformance_tasks import probe_key

__all__ = ["TaskManagerConformance"]

_S = SignatureStatus


class TaskManagerConformance:
    """Contract tests every engine adapter passes; subclass and provide the fixtures."""

    pytestmark = pytest.mark.asyncio

    refuses_unknown_tasks: ClassVar[bool] = True
    """Whether the engine refuses a dispatch of a task it does not know. Set
    False for an engine that queues such a run until a worker serves the task
    (Hatchet does: task names are registered by workers, at any time)."""

    # -- fixtures the adapter provides ------------------------------------------------

    @pytest.fixture
    def conformance_runtime(self) -> MageflowRuntime:
        """A runtime on the adapter under test, installed, serving CONFORMANCE_TASKS."""
        raise NotImplementedError(
            "override the conformance_runtime fixture: a MageflowRuntime built with your "
            "TaskManager, installed, whose workers serve mageflow.testing.conformance_tasks"
        )

    @pytest.fixture
    def conformance_timeout(self) -> float:
        """Seconds to wait for a flow to end on this engine."""
        return 30.0

    # -- helpers ----------------------------------------------------------------------

    @staticmethod
    def probe() -> str:
        return uuid.uuid4().hex[:12]

    @staticmethod
    async def events(runtime: MageflowRuntime, probe: str) -> list[str]:
        raw: Sequence[Any] = await runtime.store.client.lrange(
            probe_key(runtime.config.key_prefix, probe), 0, -1
        )
        return [item.decode() if isinstance(item, bytes) else str(item) for item in raw]

    async def wait_events(
        self, runtime: MageflowRuntime, probe: str, count: int, timeout: float
    ) -> list[str]:
        async with asyncio.timeout(timeout):
            while True:
                seen = await self.events(runtime, probe)
                if len(seen) >= count:
                    return seen
                await asyncio.sleep(0.05)

    @staticmethod
    async def ended(runtime: MageflowRuntime, key: str, timeout: float) -> Signature:
        return await wait_for_signature(key, timeout=timeout, runtime=runtime)

    @staticmethod
    async def status(runtime: MageflowRuntime, key: str) -> SignatureStatus | None:
        sig = await runtime.load(key)
        return sig.status if sig is not None else None

    # -- the contract -----------------------------------------------------------------

    async def test_run_then_success_callback(
        self, conformance_runtime: MageflowRuntime, conformance_timeout: float
    ) -> None:
        rt, p = conformance_runtime, self.probe()
        cb = await mageflow.asign("mfconf-record", probe=p, tag="ok")
        err = await mageflow.asign("mfconf-note", probe=p, tag="error")
        sig = await mageflow.asign(
            "mfconf-double", probe=p, success_callbacks=[cb], error_callbacks=[err]
        )
        await sig.aio_run_no_wait({"n": 21})
        assert (await self.ended(rt, cb.key, conformance_timeout)).status is _S.DONE
        assert (await self.ended(rt, sig.key, conformance_timeout)).status is _S.DONE
        assert await self.events(rt, p) == ["double:21", "ok:42"]
        assert await self.status(rt, err.key) is _S.SKIPPED  # the branch not taken

    async def test_retries_then_callbacks_once(
        self, conformance_runtime: MageflowRuntime, conformance_timeout: float
    ) -> None:
        rt, p = conformance_runtime, self.probe()
        ok = await mageflow.asign("mfconf-note", probe=p, tag="ok")
        err = await mageflow.asign("mfconf-note", probe=p, tag="error")
        # retries=2: attempts 1 and 2 fail, the third succeeds
        sig = await mageflow.asign(
            "mfconf-flaky", probe=p, success_callbacks=[ok], error_callbacks=[err]
        )
        await sig.aio_run_no_wait({"n": 1, "fail_times": 2})
        assert (await self.ended(rt, ok.key, conformance_timeout)).status is _S.DONE
        seen = await self.events(rt, p)
        assert seen == ["flaky-attempt:1", "flaky-attempt:2", "flaky-attempt:3", "ok"]

    async def test_error_callback_after_the_last_attempt_only(
        self, conformance_runtime: MageflowRuntime, conformance_timeout: float
    ) -> None:
        rt, p = conformance_runtime, self.probe()
        err = await mageflow.asign("mfconf-note", probe=p, tag="error")
        sig = await mageflow.asign("mfconf-flaky", probe=p, error_callbacks=[err])
        await sig.aio_run_no_wait({"n": 1, "fail_times": 99})
        assert (await self.ended(rt, err.key, conformance_timeout)).status is _S.DONE
        assert (await self.ended(rt, sig.key, conformance_timeout)).status is _S.FAILED
        seen = await self.events(rt, p)
        assert seen == ["flaky-attempt:1", "flaky-attempt:2", "flaky-attempt:3", "error"]

    async def test_non_retryable_ends_the_run_at_once(
        self, conformance_runtime: MageflowRuntime, conformance_timeout: float
    ) -> None:
        rt, p = conformance_runtime, self.probe()
        err = await mageflow.asign("mfconf-note", probe=p, tag="error")
        sig = await mageflow.asign("mfconf-final", probe=p, error_callbacks=[err])  # retries=3
        await sig.aio_run_no_wait({"n": 1})
        assert (await self.ended(rt, err.key, conformance_timeout)).status is _S.DONE
        assert (await self.ended(rt, sig.key, conformance_timeout)).status is _S.FAILED
        await asyncio.sleep(0.5)  # a retry, if the engine wrongly made one, would show up
        assert await self.events(rt, p) == ["final-attempt:1", "error"]

    async def test_suspended_run_is_parked_and_replayed_once_on_resume(
        self, conformance_runtime: MageflowRuntime, conformance_timeout: float
    ) -> None:
        rt, p = conformance_runtime, self.probe()
        sig = await mageflow.asign("mfconf-double", probe=p)
        await sig.suspend()
        await sig.aio_run_no_wait({"n": 5})
        await asyncio.sleep(0.5)
        assert await self.events(rt, p) == []
        assert await self.status(rt, sig.key) is _S.SUSPENDED
        await sig.resume()
        assert (await self.ended(rt, sig.key, conformance_timeout)).status is _S.DONE
        assert await self.events(rt, p) == ["double:5"]

    async def test_interrupt_stops_a_running_task_without_callbacks(
        self, conformance_runtime: MageflowRuntime, conformance_timeout: float
    ) -> None:
        rt, p = conformance_runtime, self.probe()
        ok = await mageflow.asign("mfconf-note", probe=p, tag="ok")
        sig = await mageflow.asign("mfconf-slow", probe=p, seconds=60, success_callbacks=[ok])
        await sig.aio_run_no_wait({"n": 1})
        await self.wait_events(rt, p, 1, conformance_timeout)
        await mageflow.pause(sig.key, PauseActionTypes.INTERRUPT)
        assert await self.status(rt, sig.key) is _S.INTERRUPTED
        await asyncio.sleep(1.0)
        assert await self.events(rt, p) == ["slow-start:1:1"]
        assert (
            await self.status(rt, ok.key) is _S.PENDING
        )  # interrupted is not settled: resume may still fire it

    async def test_chain_passes_results_and_fires_its_callback(
        self, conformance_runtime: MageflowRuntime, conformance_timeout: float
    ) -> None:
        rt, p = conformance_runtime, self.probe()
        done = await mageflow.asign("mfconf-record", probe=p, tag="chain")
        chain = await mageflow.achain(
            ["mfconf-double", "mfconf-double", "mfconf-double"], success=[done], probe=p
        )
        await chain.aio_run_no_wait({"n": 1})
        assert (await self.ended(rt, done.key, conformance_timeout)).status is _S.DONE
        assert (await self.ended(rt, chain.key, conformance_timeout)).status is _S.DONE
        assert await self.events(rt, p) == ["double:1", "double:2", "double:4", "chain:8"]

    async def test_swarm_keeps_its_concurrency_cap(
        self, conformance_runtime: MageflowRuntime, conformance_timeout: float
    ) -> None:
        rt, p = conformance_runtime, self.probe()
        done = await mageflow.asign("mfconf-note", probe=p, tag="swarm-done")
        members = [await mageflow.asign("mfconf-slow", probe=p, n=i, seconds=0.3) for i in range(5)]
        swarm = await mageflow.aswarm(
            members,
            success_callbacks=[done],
            config=SwarmConfig(max_concurrency=2),
            is_swarm_closed=True,
        )
        await swarm.aio_run_no_wait({})
        assert (await self.ended(rt, done.key, conformance_timeout)).status is _S.DONE
        assert (await self.ended(rt, swarm.key, conformance_timeout)).status is _S.DONE
        seen = await self.events(rt, p)
        starts = [e for e in seen if e.startswith("slow-start:")]
        assert sorted(int(e.split(":")[1]) for e in starts) == [0, 1, 2, 3, 4]
        assert max(int(e.split(":")[2]) for e in starts) <= 2
        assert seen.count("swarm-done") == 1

    async def test_the_same_dispatch_delivered_twice_runs_the_body_once(
        self, conformance_runtime: MageflowRuntime, conformance_timeout: float
    ) -> None:
        rt, p = conformance_runtime, self.probe()
        manager = rt.manager
        assert manager is not None
        ok = await mageflow.asign("mfconf-note", probe=p, tag="ok")
        sig = await mageflow.asign("mfconf-double", probe=p, success_callbacks=[ok])
        data = {"n": 3, "probe": p}
        dispatch_id = uuid.uuid4().hex
        assert await rt.store.dispatch(sig.key, data, dispatch_id, "") == "dispatch"
        request = DispatchRequest(
            task_name="mfconf-double", input=data, signature_key=sig.key, dispatch_id=dispatch_id
        )
        first = await manager.dispatch(request)
        await manager.dispatch(request)  # the adapter need not deduplicate: core does
        assert (await self.ended(rt, ok.key, conformance_timeout)).status is _S.DONE
        await asyncio.sleep(0.5)
        assert await self.events(rt, p) == ["double:3", "ok"]
        if first.run_id is not None:
            # cancelling a run that already ended is a no-op
            await manager.cancel(CancelRequest(run_id=first.run_id, signature_key=sig.key))

    async def test_crash_between_finish_and_the_callbacks_dispatch(
        self, conformance_runtime: MageflowRuntime, conformance_timeout: float
    ) -> None:
        rt, p = conformance_runtime, self.probe()
        ok = await mageflow.asign("mfconf-note", probe=p, tag="ok")
        sig = await mageflow.asign("mfconf-double", probe=p, success_callbacks=[ok])
        # A worker ran the task and recorded its outcome (FINISH claimed the
        # callback), then died before sending the callback to the engine.
        data = {"n": 4, "probe": p}
        dispatch_id = uuid.uuid4().hex
        await rt.store.dispatch(sig.key, data, dispatch_id, "")
        await rt.store.begin(sig.key, dispatch_id, "crashed-run", data)
        code, outbox = await rt.store.finish(
            sig.key, succeeded=True, run_id="crashed-run", payload=8
        )
        assert code == "ok" and [e.key for e in outbox] == [ok.key]
        # Recovery (a worker's periodic recover()) sends the callback, once.
        assert await rt.recover(older_than=timedelta(0)) >= 1
        assert (await self.ended(rt, ok.key, conformance_timeout)).status is _S.DONE
        await rt.recover(older_than=timedelta(0))
        await asyncio.sleep(0.5)
        assert await self.events(rt, p) == ["ok"]

    async def test_unknown_task_is_refused_with_engine_error(
        self, conformance_runtime: MageflowRuntime
    ) -> None:
        if not self.refuses_unknown_tasks:
            pytest.skip("this engine queues runs of tasks no worker serves yet")
        manager = conformance_runtime.manager
        assert manager is not None
        request = DispatchRequest(
            task_name=f"mfconf-no-such-task-{uuid.uuid4().hex[:6]}",
            input={},
            signature_key="mfconf-none",
            dispatch_id=uuid.uuid4().hex,
        )
        with pytest.raises(EngineError):
            await manager.dispatch(request)
