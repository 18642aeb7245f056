"""``TaskManager`` for Hatchet: dispatch, cancel and describe through hatchet-sdk."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from hatchet_sdk import Hatchet
from hatchet_sdk.clients.rest.api.task_api import TaskApi
from hatchet_sdk.clients.rest.api.workflow_runs_api import WorkflowRunsApi
from hatchet_sdk.clients.rest.exceptions import NotFoundException
from hatchet_sdk.clients.rest.models.v1_task_event import V1TaskEvent
from hatchet_sdk.clients.rest.models.v1_task_event_type import V1TaskEventType
from hatchet_sdk.clients.rest.models.v1_task_status import V1TaskStatus
from hatchet_sdk.clients.rest.models.v1_task_summary import V1TaskSummary
from hatchet_sdk.types.trigger import TriggerWorkflowOptions, WorkflowRunTriggerConfig
from mageflow.engine import (
    CancelRequest,
    DescribeRequest,
    DispatchRequest,
    DispatchResult,
    RunState,
    RunStatusRequest,
    RunStatusResult,
    TaskDescription,
    TaskManager,
)
from pydantic import BaseModel
from thirdmagic.errors import DispatchRefusedError

from mageflow_hatchet._errors import dispatch_error, map_hatchet_exceptions

__all__ = ["HatchetTaskManager", "from_environment"]

log = logging.getLogger("mageflow.hatchet")

# Dispatches leave through a thread pool of our own with no contextvars in
# it. Hatchet turns a run triggered from inside a task into a child of that
# task (and copies the parent's metadata) by reading contextvars; a callback
# or a swarm member must not be a child: its lifecycle is its own. And the
# SDK's async trigger borrows asyncio's small default executor, which a swarm
# finishing many members at once would queue behind.
_DISPATCH_THREADS = 16
# Under load, dispatches that queue while this many bulk calls are in flight
# go together in the next one: no added latency when idle, big batches when busy.
# On a busy engine each call takes hundreds of ms; fewer, bigger calls did
# better than more, smaller ones: 2 was 1-10% faster than 4 side by side, and
# 8 or 16 no better (benchmarks/README.md, "Dispatch path"). Two keep a second
# call going while one is slow.
_MAX_IN_FLIGHT = 2
# Hatchet's REST API has no lookup of many runs by id: run_status asks for
# each run, this many at a time.
_STATUS_CONCURRENCY = 8
_EVENT_ROWS = 100

_STATES = {
    V1TaskStatus.QUEUED: RunState.QUEUED,
    V1TaskStatus.RUNNING: RunState.RUNNING,
    V1TaskStatus.COMPLETED: RunState.COMPLETED,
    V1TaskStatus.FAILED: RunState.FAILED,
    V1TaskStatus.CANCELLED: RunState.CANCELLED,
}


# Task names registered through any MageFlow client of this process: a task
# of another client (say, one with other AcceptParams) reports back too.
_MANAGED: set[str] = set()


class HatchetTaskManager(TaskManager):
    """Runs signatures as Hatchet runs.

    The signature key and dispatch id travel in the run's additional metadata
    (``mageflow_signature_key``, ``mageflow_dispatch_id``), so a run can be
    found in the Hatchet dashboard by signature key.
    """

    def __init__(self, hatchet: Hatchet) -> None:
        self.hatchet = hatchet
        self._by_name: dict[str, TaskDescription] = {}
        self._by_object: dict[int, str] = {}
        self._pool = ThreadPoolExecutor(_DISPATCH_THREADS, thread_name_prefix="mageflow-dispatch")
        # bulk trigger calls at a time (a tuning knob, see _MAX_IN_FLIGHT)
        self.max_in_flight = _MAX_IN_FLIGHT
        self._batch: list[tuple[WorkflowRunTriggerConfig, asyncio.Future[str]]] = []
        self._flush_scheduled = False
        self._sending: set[asyncio.Task[None]] = set()

    def register(
        self, task: Any, name: str, input_model: type[BaseModel] | None, retries: int
    ) -> None:
        self._by_name[name] = TaskDescription(name=name, input_model=input_model, retries=retries)
        self._by_object[id(task)] = name
        _MANAGED.add(name)

    def describe(self, request: DescribeRequest) -> TaskDescription | None:
        task = request.task
        if isinstance(task, str):
            return self._by_name.get(task)
        name = self._by_object.get(id(task))
        if name is not None:
            return self._by_name[name]
        task_name = getattr(task, "name", None)
        if isinstance(task_name, str):
            known = self._by_name.get(task_name)
            if known is not None:
                return known
            validator = getattr(task, "input_validator_type", None)
            model = (
                validator
                if isinstance(validator, type) and issubclass(validator, BaseModel)
                else None
            )
            # a task object the MageFlow client did not register (plain
            # hatchet.task, a workflow): its runs never report back
            return TaskDescription(name=task_name, input_model=model, managed=task_name in _MANAGED)
        return None

    def _trigger(self, request: DispatchRequest) -> WorkflowRunTriggerConfig:
        options = dict(request.options)
        metadata = {**(options.pop("additional_metadata", None) or {}), **request.metadata()}
        return WorkflowRunTriggerConfig(
            workflow_name=request.task_name,
            input=json.dumps(request.input),
            options=TriggerWorkflowOptions(
                additional_metadata=metadata, priority=options.pop("priority", None), **options
            ),
        )

    async def dispatch(self, request: DispatchRequest) -> DispatchResult:
        """Queue the run; dispatches requested in the same event-loop turn go as one bulk call."""
        try:
            trigger = self._trigger(request)
        except ValueError as exc:
            raise DispatchRefusedError(
                f"invalid run options for {request.task_name!r}: {exc}; nothing was run",
                key=request.signature_key,
            ) from exc
        loop = asyncio.get_running_loop()
        done: asyncio.Future[str] = loop.create_future()
        self._batch.append((trigger, done))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush, loop)
        run_id = await done
        return DispatchResult(run_id=run_id)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._flush_scheduled = False
        if not self._batch or len(self._sending) >= self.max_in_flight:
            return
        batch, self._batch = self._batch, []
        task = loop.create_task(self._send(batch))
        self._sending.add(task)

        def sent(t: asyncio.Task[None]) -> None:
            self._sending.discard(t)
            self._flush(loop)

        task.add_done_callback(sent)

    async def _send(
        self, batch: list[tuple[WorkflowRunTriggerConfig, asyncio.Future[str]]]
    ) -> None:
        admin = self.hatchet._client.admin
        loop = asyncio.get_running_loop()

        def one(t: WorkflowRunTriggerConfig) -> str:
            return str(admin.run_workflow(t.workflow_name, t.input, t.options).workflow_run_id)

        if len(batch) > 1:
            triggers = [t for t, _ in batch]
            try:
                refs = await loop.run_in_executor(self._pool, lambda: admin.run_workflows(triggers))
            except Exception:
                # One bad trigger (an unknown task, say) fails a bulk call as a
                # whole; send each on its own so only that caller sees the error.
                log.info("bulk dispatch of %d runs failed; sending each alone", len(batch))
                refs = None
            if refs is not None and len(refs) == len(batch):
                for (_, fut), ref in zip(batch, refs, strict=True):
                    if not fut.done():
                        fut.set_result(str(ref.workflow_run_id))
                return
        for trigger, fut in batch:
            try:
                run_id = await loop.run_in_executor(self._pool, one, trigger)
            except Exception as exc:
                if not fut.done():
                    fut.set_exception(dispatch_error(f"dispatch of {trigger.workflow_name!r}", exc))
            else:
                if not fut.done():
                    fut.set_result(run_id)

    async def cancel(self, request: CancelRequest) -> None:
        with map_hatchet_exceptions(f"cancel of run {request.run_id!r}"):
            await self.hatchet.runs.aio_cancel(request.run_id)

    async def run_status(self, request: RunStatusRequest) -> RunStatusResult:
        """Each run's state through Hatchet's REST API; a run it does not know is unknown.

        A failed run is looked at closer (two more calls, for failed runs
        only): Hatchet's status reads ``FAILED`` between an attempt that failed
        and the engine's retry of it (a send to a worker that had died, a lost
        worker, a timeout), and sends to dead workers are retried past the
        task's retry budget. So a failure reads ``running`` for a grace period
        by the engine's clock, unless it is plainly the last one (an
        application failure or timeout on the budget's last attempt). A
        timeout reads ``FAILED`` too; a last attempt that ended ``TIMED_OUT``
        (execution timeout) or ``SCHEDULING_TIMED_OUT`` (never assigned within
        the schedule timeout, never retried) is :attr:`RunState.TIMED_OUT`.
        """
        runs = self.hatchet.runs
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(_STATUS_CONCURRENCY)

        def one(run_id: str) -> RunState:
            # the REST call without hatchet-sdk's retries: a 404 is an answer here
            with runs.client() as client:
                try:
                    status = V1TaskStatus(
                        WorkflowRunsApi(client).v1_workflow_run_get_status(run_id)
                    )
                except NotFoundException:
                    return RunState.UNKNOWN
                if status is not V1TaskStatus.FAILED:
                    return _STATES.get(status, RunState.UNKNOWN)
                # A MageFlow run is one task, whose id is the run id. The engine
                # applies the event limit as given (none reads as 0 rows); one
                # row per event type and attempt.
                tasks = TaskApi(client)
                try:
                    task = tasks.v1_task_get(run_id)
                    got = tasks.v1_task_event_list_with_http_info(run_id, limit=_EVENT_ROWS)
                except NotFoundException:  # not a single task: a failure it is
                    return RunState.FAILED
            events = got.data.rows or []
            return _failed_state(events, _engine_retries(task), _engine_now(got.headers))

        async def ask(run_id: str) -> tuple[str, RunState]:
            async with gate:
                with map_hatchet_exceptions(f"status of run {run_id!r}"):
                    return run_id, await loop.run_in_executor(self._pool, one, run_id)

        pairs = await asyncio.gather(*(ask(r) for r in dict.fromkeys(request.run_ids)))
        return RunStatusResult(states=dict(pairs))


_FAILURES = frozenset(
    {V1TaskEventType.FAILED, V1TaskEventType.TIMED_OUT, V1TaskEventType.SCHEDULING_TIMED_OUT}
)
# How long a failure is taken for one the engine is still retrying: its retry
# shows within seconds (tens under load); a failure the engine did not retry
# after all is settled this long after it.
_RETRY_GRACE = timedelta(minutes=2)
# The engine's message for a send to a worker it still counted alive; such
# sends are retried past the task's retry budget.
_SEND_FAILED = "Could not send task to worker"


def _engine_now(headers: Mapping[str, str] | None) -> datetime:
    """The engine's clock (the response's ``Date``), so event ages need no synced clocks."""
    date = (headers or {}).get("Date") or (headers or {}).get("date")
    if date:
        try:
            return parsedate_to_datetime(date)
        except (TypeError, ValueError):
            pass
    return datetime.now(UTC)


def _engine_retries(task: V1TaskSummary) -> int | None:
    """The engine's retry budget of the run's task, from the workflow config it reports."""
    config = task.workflow_config or {}
    for spec in config.get("Tasks") or []:
        if isinstance(spec, dict) and spec.get("Action") in (task.action_id, None):
            retries = spec.get("Retries")
            return retries if isinstance(retries, int) else None
    return None


def _failed_state(events: Sequence[V1TaskEvent], retries: int | None, now: datetime) -> RunState:
    """What a run whose status reads ``FAILED`` is, by its task events.

    Only the last attempt counts (an earlier attempt's timeout was retried).
    ``retries`` is the engine's budget (None: not known); ``now`` the engine's
    time.
    """
    if not events:
        return RunState.FAILED
    last = max(e.retry_count or 0 for e in events)
    mine = [e for e in events if (e.retry_count or 0) == last]
    kinds = {e.event_type for e in mine}
    if V1TaskEventType.SCHEDULING_TIMED_OUT in kinds:
        return RunState.TIMED_OUT
    ended = RunState.TIMED_OUT if V1TaskEventType.TIMED_OUT in kinds else RunState.FAILED
    failures = [e for e in mine if e.event_type in _FAILURES]
    sent_to_dead = any((e.error_message or "").startswith(_SEND_FAILED) for e in failures)
    if failures and not sent_to_dead and retries is not None and last >= retries:
        return ended  # the budget's last attempt failed: the engine is done with it
    if now - max(e.timestamp for e in mine) < _RETRY_GRACE:
        # the engine retries it (or already began to: the status lags its events)
        return RunState.RUNNING
    return ended


def from_environment() -> HatchetTaskManager:
    """A manager for tools (the ``mageflow`` CLI, the dashboard), configured from the
    ``HATCHET_CLIENT_*`` environment variables; raises when they are missing."""
    return HatchetTaskManager(Hatchet())
