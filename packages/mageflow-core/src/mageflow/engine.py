"""The adapter contract: everything an engine adapter needs from MageFlow core, in public.

An engine adapter (``mageflow-hatchet``, or one you write) does two things:

* **Send side** — it implements :class:`TaskManager`: core calls ``dispatch``
  to start a run, ``cancel`` to stop one, ``describe`` to learn a task's name
  and input model, ``run_status`` to ask what became of runs (the
  reconciler). Each method takes one frozen, keyword-only input model, so
  fields can be added without breaking adapters.
* **Worker side** — for every run the engine delivers whose metadata carries
  :data:`SIGNATURE_KEY_META`, it builds a :class:`RunRequest` (the run's ids,
  payload and the task body to call) and awaits
  ``runtime.execute_run(request)``, which returns a :class:`RunOutcome`.

Core owns the "do not retry" signal: a body that raises :class:`NonRetryable`
ends the run with no further attempt on every engine; an adapter maps its
engine's own signal to it in ``RunRequest.is_final_failure`` and tells its
engine not to retry when core says so. ``mageflow.testing.conformance`` checks
an adapter against this contract; ``docs/adapters.md`` walks through one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field
from thirdmagic.errors import EngineError, MageflowError

if TYPE_CHECKING:
    from thirdmagic.signature import Signature

    from mageflow._runtime import MageflowRuntime

__all__ = [
    "DISPATCH_ID_META",
    "REFERENCE_TAG",
    "SIGNATURE_KEY_META",
    "TASK_META",
    "CancelRequest",
    "DescribeRequest",
    "DispatchRequest",
    "DispatchResult",
    "NonRetryable",
    "RunBody",
    "RunOutcome",
    "RunRequest",
    "RunState",
    "RunStatusRequest",
    "RunStatusResult",
    "TaskDescription",
    "TaskManager",
    "holds_reference",
]

SIGNATURE_KEY_META = "mageflow_signature_key"
"""Run metadata key carrying the signature key (from :meth:`DispatchRequest.metadata`)."""
DISPATCH_ID_META = "mageflow_dispatch_id"
"""Run metadata key carrying the dispatch id core claimed for the run."""
TASK_META = "mageflow_task"
"""Run metadata key carrying the task the dispatch was meant for: engines copy a
run's metadata into child runs it starts, and a child must not take itself for
its parent's signature run."""

REFERENCE_TAG = "__mageflow_ref__"
"""Key of the small object that stands for a payload stored in Redis (a run
input or result above ``MageflowConfig.payload_threshold``, or a swarm's
result list). Core resolves references on the worker, before validation."""


def holds_reference(payload: Any) -> bool:
    """Whether a run's input carries a payload reference, as a whole or in a field.

    An adapter whose engine validates a run's input before handing it over
    must let such an input through unvalidated (as a plain dict): core
    resolves the reference, then validates the real input.
    """
    if not isinstance(payload, dict):
        return False
    if REFERENCE_TAG in payload:
        return True
    return any(isinstance(v, dict) and REFERENCE_TAG in v for v in payload.values())


class NonRetryable(MageflowError):
    """Raise from a task body to end the run now: no retry, error callbacks fire once.

    Understood by core on every engine. Adapters map their engine's own signal
    to it (Hatchet: ``NonRetryableException`` is final too) and, when core
    says a failure is final, tell the engine not to retry.
    """


_FROZEN = ConfigDict(frozen=True, extra="forbid")


class DispatchRequest(BaseModel):
    """Input for :meth:`TaskManager.dispatch`: start one run of ``task_name`` with ``input``.

    ``signature_key`` and ``dispatch_id`` must reach the worker unchanged with
    the run (put :meth:`metadata` where the engine carries per-run metadata);
    the worker hands them back to core in the :class:`RunRequest`, which is how
    duplicates and stale runs are recognised. ``options`` are engine options
    the caller passed to ``aio_run_no_wait`` (Hatchet: trigger options).
    """

    model_config = _FROZEN

    task_name: str
    input: dict[str, Any]
    signature_key: str
    dispatch_id: str
    options: dict[str, Any] = Field(default_factory=dict)

    def metadata(self) -> dict[str, str]:
        """The run metadata the worker needs: signature key, dispatch id, task name."""
        return {
            SIGNATURE_KEY_META: self.signature_key,
            DISPATCH_ID_META: self.dispatch_id,
            TASK_META: self.task_name,
        }


class DispatchResult(BaseModel):
    """Output of :meth:`TaskManager.dispatch`: the engine's id of the new run, when it has one."""

    model_config = _FROZEN

    run_id: str | None = None


class CancelRequest(BaseModel):
    """Input for :meth:`TaskManager.cancel`: stop run ``run_id`` of signature ``signature_key``."""

    model_config = _FROZEN

    run_id: str
    signature_key: str | None = None


class RunState(StrEnum):
    """What the engine says about a run (:meth:`TaskManager.run_status`)."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    UNKNOWN = "unknown"
    """the engine has no such run (never received, or forgotten)"""


class RunStatusRequest(BaseModel):
    """Input for :meth:`TaskManager.run_status`: the engine's ids of the runs to look up."""

    model_config = _FROZEN

    run_ids: tuple[str, ...]


class RunStatusResult(BaseModel):
    """Output of :meth:`TaskManager.run_status`: a state for every run id asked about.

    A run id missing from ``states`` reads as :attr:`RunState.UNKNOWN`.
    """

    model_config = _FROZEN

    states: Mapping[str, RunState] = Field(default_factory=dict)

    def state(self, run_id: str) -> RunState:
        return self.states.get(run_id, RunState.UNKNOWN)


class DescribeRequest(BaseModel):
    """Input for :meth:`TaskManager.describe`: a task name, or a task object of the engine."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    task: Any


class TaskDescription(BaseModel):
    """Output of :meth:`TaskManager.describe`."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    name: str
    input_model: type[BaseModel] | None = None
    retries: int = 0
    managed: bool = True
    """whether the task reports back to MageFlow (registered through the MageFlow
    client): ``asign`` refuses a task that does not, unless fire-and-forget"""


class TaskManager(Protocol):
    """Contract every engine adapter fulfils (subclass it to inherit the no-op :meth:`bind`).

    ``dispatch``
        Enqueue one run and return without waiting for it. It must not run the
        task body inline. It may be called again with the same ``dispatch_id``
        after a crash; the duplicate run is harmless because core skips a run
        whose dispatch was already claimed, so the adapter need not deduplicate.
        Raises ``EngineError`` when the engine refuses the run (an unknown
        task, for an engine that checks) or cannot be reached.
    ``cancel``
        Stop a run that may be executing; a run that already ended is a no-op.
        Raises ``EngineError`` when the engine cannot be reached.
    ``describe``
        Name, input model and retry count of a task this process knows, or
        None when it does not know the task. Local and fast: no I/O. A task
        object of the engine that was not registered through MageFlow (so its
        runs never report back) is described with ``managed=False``.
    ``run_status``
        The engine's state of many runs in one call (ids as ``dispatch``
        returned them): what the reconciler settles stuck signatures by. A
        run the engine does not know is ``unknown``, never an error. Raises
        ``EngineError`` when the engine cannot be reached. The default raises
        ``EngineError``: an adapter without it gets no reconciliation of
        begun runs, only re-sends of claims that never got a run id.
    ``bind``
        Called once when a runtime is built with this manager; an adapter that
        executes runs keeps the runtime to call ``execute_run`` on.
    """

    async def dispatch(self, request: DispatchRequest) -> DispatchResult: ...

    async def cancel(self, request: CancelRequest) -> None: ...

    def describe(self, request: DescribeRequest) -> TaskDescription | None: ...

    async def run_status(self, request: RunStatusRequest) -> RunStatusResult:
        """The engine's state of each run in ``request.run_ids``."""
        raise EngineError(f"{type(self).__name__} cannot report the status of runs")

    def bind(self, runtime: MageflowRuntime) -> None:
        """Remember the runtime this manager serves (default: nothing to remember)."""
        return None


RunBody = Callable[[Any, "Signature"], Awaitable[Any]]
"""The task body core calls: ``(validated input, signature) -> return value``."""


def _never_final(exc: BaseException) -> bool:
    return False


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRequest:
    """Input for ``MageflowRuntime.execute_run``: one delivered attempt of a signature's run.

    ``signature_key``, ``dispatch_id``
        From the run's metadata (:data:`SIGNATURE_KEY_META`, :data:`DISPATCH_ID_META`).
    ``run_id``
        The engine's id of this run; the same on a redelivery of the same run.
    ``payload``
        The run's input as the engine delivered it (a JSON object).
    ``body``
        Called with the input (validated into the task's model when it has
        one, else the dict) and the signature; its return value is the result.
    ``is_final_failure``
        Whether an exception from ``body`` ends the run (no retry follows),
        which is when error callbacks fire. :class:`NonRetryable` is final
        whatever this says.
    ``model``
        The task's input model when the adapter knows it.
    ``task_name``
        The task the engine ran.
    ``retries``
        The task's retry budget (from its registration): how many application
        failures of the run are retried. Core counts them in the store, once
        per attempt, so an attempt the engine restarts after losing a worker
        never spends one. None: the adapter has no budget to give, and
        ``is_final_failure`` alone decides (every failure it does not call
        final is left to the engine to retry).
    ``attempt``
        An id of this delivery, distinct for every attempt of the run (Hatchet:
        run id and attempt number); core makes one up when empty.
    ``engine_will_retry``
        Whether the engine starts another attempt of this run when this one
        raises a retryable error. When core's budget says retry but the engine
        will not, core starts the retry itself as a new run of the signature.
    ``deadline``
        ``time.monotonic()`` value at which the engine gives up on this attempt
        (its execution timeout), when known: store retries stop before it.
    """

    signature_key: str
    dispatch_id: str
    run_id: str
    payload: dict[str, Any]
    body: RunBody
    is_final_failure: Callable[[BaseException], bool] = _never_final
    model: type[BaseModel] | None = None
    task_name: str = ""
    retries: int | None = None
    attempt: str = ""
    engine_will_retry: bool = True
    deadline: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOutcome:
    """Output of ``execute_run``.

    ``ran`` is False when core decided the body must not run (``reason``:
    ``missing``, ``stale``, ``duplicate``, ``finished``, ``parked``, ``drained``,
    a signature status such as ``canceled`` (an adapter should then cancel the
    run in its engine, so the engine does not read it as a completed run),
    ``deferred`` (a swarm member sent ahead of free places found none within
    its wait and handed its claim back: the member is sent again later),
    ``store-unavailable``: the store could not be reached within
    ``MageflowConfig.store_retry_window`` and the run is left to the reconciler);
    otherwise ``result`` is what the body returned. A failed body raises out of
    ``execute_run`` instead: the adapter lets the engine see the failure.
    """

    ran: bool
    result: Any = None
    reason: str = ""
