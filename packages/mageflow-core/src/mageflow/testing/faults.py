"""Deterministic fault injection for your own flow tests, on the in-memory engine.

A real engine redelivers runs and a real worker dies at the worst moment; these
make that happen on purpose, the same way every time::

    manager = FaultyTaskManager(Faults(deliver_twice=True))       # every run delivered twice
    manager = FaultyTaskManager(Faults(crash_at_step=2))          # the 2nd body call "crashes"

Register tasks on it exactly as on ``InMemoryTaskManager``. What your test then
checks is that the flow's outcome is the same as without faults.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from mageflow.engine import DispatchRequest, DispatchResult, RunOutcome, RunRequest
from mageflow.inmemory import InMemoryTask, InMemoryTaskManager

if TYPE_CHECKING:
    from thirdmagic.signature import Signature

    from mageflow._runtime import MageflowRuntime

__all__ = ["Faults", "FaultyTaskManager", "SimulatedCrash"]


class SimulatedCrash(Exception):
    """The worker died after a body returned and before its outcome was recorded."""


@dataclass(frozen=True, kw_only=True)
class Faults:
    """Which faults to inject; all off by default.

    ``dispatch_twice``
        Every dispatch starts two runs of the same dispatch (an engine that
        delivered a duplicate). The second is skipped as a duplicate.
    ``deliver_twice``
        Every run is delivered again after its first delivery ended (an engine
        redelivery of the same run id). The second delivery runs no body; a
        finished run re-sends its callbacks, which skip themselves.
    ``crash_at_step``
        The k-th body call of this manager (1-based, counting every task)
        returns, then the worker "crashes" before recording the outcome; the
        engine redelivers the same run, so that body runs a second time (a
        body's side effects are at-least-once), and the flow goes on.
    """

    dispatch_twice: bool = False
    deliver_twice: bool = False
    crash_at_step: int | None = None


class FaultyTaskManager(InMemoryTaskManager):
    """``InMemoryTaskManager`` that injects the given :class:`Faults`."""

    def __init__(self, faults: Faults) -> None:
        super().__init__()
        self.faults = faults
        self.steps = 0
        self.crashes = 0
        self.deliveries = 0

    async def dispatch(self, request: DispatchRequest) -> DispatchResult:
        result = await super().dispatch(request)
        if self.faults.dispatch_twice:
            await super().dispatch(request)
        return result

    async def _call_body(self, task: InMemoryTask, arg: Any, sig: Signature) -> Any:
        result = await super()._call_body(task, arg, sig)
        self.steps += 1
        if self.steps == self.faults.crash_at_step:
            self.crashes += 1
            raise SimulatedCrash(f"simulated crash after step {self.steps} ({task.name})")
        return result

    async def _deliver(self, runtime: MageflowRuntime, request: RunRequest) -> RunOutcome:
        judge = request.is_final_failure

        def final(exc: BaseException) -> bool:
            # a crash is not an outcome: nothing is recorded, the run comes back
            return not isinstance(exc, SimulatedCrash) and judge(exc)

        request = replace(request, is_final_failure=final)
        while True:
            self.deliveries += 1
            try:
                outcome = await runtime.execute_run(request)
            except SimulatedCrash:
                continue  # the engine redelivers the same run
            if self.faults.deliver_twice:
                self.deliveries += 1
                await runtime.execute_run(request)
            return outcome
