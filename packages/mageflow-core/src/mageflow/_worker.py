"""The worker path: one delivered attempt of a signature's run, from BEGIN to FINISH.

An adapter calls ``MageflowRuntime.execute_run`` for every run it receives
that carries a signature key; this module is what happens inside.

Two rules shape it (docs/lifecycle.md, "Retries, worker losses and store
outages"):

* Finality comes from a count MageFlow owns: each application failure is
  counted by ``finish.lua`` against the task's retry budget, once per attempt.
  An attempt the engine restarts because a worker was lost never counts.
* A store outage is not the task's failure: every store call here is safe to
  repeat, so it is retried across connection loss and ``LOADING`` for
  ``MageflowConfig.store_retry_window`` (never past the run's deadline). When
  the window runs out the run is left to the engine's next attempt, or, when
  the engine makes none, to the reconciler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from thirdmagic.errors import StoreUnavailableError
from thirdmagic.signature import to_json_value

from mageflow import _locks, _merge, _payloads
from mageflow._crash import crash_point
from mageflow._results import error_payload
from mageflow._run_ids import SentRun
from mageflow._store.codec import OutboxEntry, R
from mageflow._store.redis_store import BeginResult
from mageflow.engine import (
    DispatchRequest,
    DispatchResult,
    NonRetryable,
    RunOutcome,
    RunRequest,
)

if TYPE_CHECKING:
    from mageflow._runtime import MageflowRuntime

__all__ = ["execute_run", "is_final"]

log = logging.getLogger("mageflow")

_T = TypeVar("_T")

# Stop retrying the store this long before the run's deadline, so the attempt
# still ends on its own terms (the engine's timeout would count as a failure).
_DEADLINE_MARGIN = 1.0
_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 2.0
# A run claimed ahead of free places that finds its swarm at the cap asks
# again this often (doubling), for at most this long (see _begin).
_PLACE_POLL_FIRST = 0.02
_PLACE_POLL_MAX = 0.5
_PLACE_WAIT = 10.0


def is_final(request: RunRequest, exc: BaseException) -> bool:
    """Whether ``exc`` from the body ends the run: core's own signal, else the adapter's say."""
    return isinstance(exc, NonRetryable) or request.is_final_failure(exc)


class _StoreGaveUp(Exception):
    """Internal: the store stayed unreachable for the whole retry window."""

    def __init__(self, error: StoreUnavailableError) -> None:
        self.error = error
        super().__init__(str(error))


class _Persist:
    """Runs store calls of one attempt, retried while the store is unreachable."""

    def __init__(self, runtime: MageflowRuntime, request: RunRequest) -> None:
        self.runtime = runtime
        self.request = request
        # repeats of FINISH within this attempt share it; another attempt has its own
        self.attempt = request.attempt or f"{request.run_id}#{uuid.uuid4().hex}"

    def _give_up_at(self) -> float:
        window = self.runtime.store.config.store_retry_window.total_seconds()
        until = time.monotonic() + window
        if self.request.deadline is not None:
            until = min(until, self.request.deadline - _DEADLINE_MARGIN)
        return until

    async def __call__(self, what: str, call: Callable[[], Awaitable[_T]]) -> _T:
        give_up_at: float | None = None
        delay = _BACKOFF_FIRST
        while True:
            try:
                return await call()
            except StoreUnavailableError as exc:
                if give_up_at is None:
                    give_up_at = self._give_up_at()
                left = give_up_at - time.monotonic()
                if left <= 0:
                    raise _StoreGaveUp(exc) from exc
                log.warning(
                    "%s of %s: store unreachable (%s); retrying for %.1fs more",
                    what,
                    self.request.signature_key,
                    exc.__cause__ or exc,
                    left,
                )
                await self._fresh_connections()
                await asyncio.sleep(min(delay * random.uniform(0.5, 1.0), left))
                delay = min(delay * 2, _BACKOFF_MAX)

    async def _fresh_connections(self) -> None:
        # Idle pooled connections may point at the server that went away; the
        # next call must dial again rather than fail on a dead socket.
        pool = getattr(self.runtime.store.client, "connection_pool", None)
        disconnect = getattr(pool, "disconnect", None)
        if disconnect is not None:
            with contextlib.suppress(Exception):
                await disconnect(inuse_connections=False)


@contextlib.contextmanager
def _carrying(runtime: MageflowRuntime) -> Iterator[list[SentRun]]:
    """Run ids for the next script call to record; kept for another when the call raises."""
    sent = runtime.run_ids.take()
    try:
        yield sent
    except BaseException:
        runtime.run_ids.give_back(sent)
        raise


async def execute_run(runtime: MageflowRuntime, request: RunRequest) -> RunOutcome:
    """Drive one delivered attempt of a signature's run (see ``mageflow.engine.RunRequest``).

    Cancellation propagates untouched: an interrupted run records nothing.
    """
    try:
        return await _attempt(runtime, request, _Persist(runtime, request))
    except _StoreGaveUp as gave_up:
        if request.engine_will_retry:
            # the engine's next attempt starts over (BEGIN and FINISH are safe
            # to repeat); MageFlow's own retry count is untouched
            log.error(
                "store unreachable for run %s of %s; leaving it to the engine's next attempt",
                request.run_id,
                request.signature_key,
            )
            raise gave_up.error from None
        log.error(
            "store unreachable for run %s of %s and the engine makes no further attempt; "
            "left to the reconciler",
            request.run_id,
            request.signature_key,
        )
        return RunOutcome(ran=False, reason="store-unavailable")


async def _attempt(runtime: MageflowRuntime, request: RunRequest, persist: _Persist) -> RunOutcome:
    store = runtime.store
    key = request.signature_key
    crash_point("begin:before", key)
    begun = await _begin(runtime, request, persist)
    crash_point("begin:after", key)
    if begun.decision == "skip":
        log.info("run %s of %s skipped: %s", request.run_id, key, begun.reason)
        return RunOutcome(ran=False, reason=begun.reason)
    if begun.decision == "park":
        log.info("signature %s is suspended; run %s parked until resume", key, request.run_id)
        return RunOutcome(ran=False, reason="parked")
    if begun.decision == "drain":
        await _dispatch(runtime, persist, key, begun.outbox)
        return RunOutcome(ran=False, reason="drained")
    sig = begun.signature
    assert sig is not None
    # Input that does not fit and a return value that is not JSON end the
    # attempt like an exception from the body: otherwise the signature would
    # stay active forever and no error callback would fire.
    try:
        model = request.model or runtime.model_for(sig.task_name, sig.model_validators_path)
        payload = await _payloads.resolve_input(store, request.payload, model)
        data = _merge.rebind_at_start(payload, dict(sig.kwargs), model)
        arg: Any = data
        if model is not None:
            arg = _merge.validate_input(model, data, key=key, task_name=sig.task_name)
        with runtime.activate():
            result = await request.body(arg, sig)
        plain = to_json_value(result, field=f"return value of {sig.task_name}")
        plain, by_reference = await _payloads.result_payload(store, key, plain)
    except Exception as exc:
        # BaseExceptions (cancellation, the process exiting) record nothing:
        # like a lost worker, they spend no retry
        signal = await _failed(runtime, request, persist, exc)
        if signal is exc:
            raise
        raise signal from exc
    await _finish(runtime, request, persist, succeeded=True, payload=plain)
    # a result too big for the engine reaches it as its reference
    return RunOutcome(ran=True, result=plain if by_reference else result)


async def _begin(runtime: MageflowRuntime, request: RunRequest, persist: _Persist) -> BeginResult:
    """BEGIN; a swarm member that finds every place taken asks again until one frees.

    It waits holding its worker slot, for at most ``_PLACE_WAIT`` (and a
    quarter of the time left to its deadline); then it hands its claim back
    and the member is claimed again, as a new run, when a place frees. Only
    runs claimed ahead of free places (``SwarmConfig.prefetch``) can wait, and
    only when workers have more free slots than the swarm may use; the swarm
    then stops claiming ahead for a while (``keys.PREFETCH_PAUSE``).
    """
    store = runtime.store
    key = request.signature_key
    lock_wait = store.config.lock_ttl + store.config.lock_wait
    started = time.monotonic()
    until = started + _PLACE_WAIT
    if request.deadline is not None:
        until = min(until, started + max(0.0, request.deadline - started) / 4)
    delay = _PLACE_POLL_FIRST
    give_up = False

    async def begin(last: bool) -> BeginResult:
        with _carrying(runtime) as sent:
            return await persist(
                "begin",
                lambda: _locks.waiting_for_lock(
                    store.config,
                    key,
                    lambda: store.begin(
                        key,
                        request.dispatch_id,
                        request.run_id,
                        request.payload,
                        sent=sent,
                        give_up=last,
                    ),
                    lock_wait,
                ),
            )

    while True:
        begun = await begin(give_up)
        if begun.decision != "wait":
            return begun
        left = until - time.monotonic()
        give_up = left <= delay
        await asyncio.sleep(max(0.0, min(delay, left)) * random.uniform(0.75, 1.0))
        delay = min(delay * 2, _PLACE_POLL_MAX)


async def _failed(
    runtime: MageflowRuntime, request: RunRequest, persist: _Persist, exc: BaseException
) -> BaseException:
    """Record a failed attempt; returns what to raise to the engine."""
    final = is_final(request, exc)
    if request.retries is None and not final:
        # no budget from the adapter: the engine's retry is the only one
        return exc
    code = await _finish(
        runtime,
        request,
        persist,
        succeeded=False,
        payload=error_payload(exc, request.signature_key),
        retries=-1 if final or request.retries is None else request.retries,
    )
    if code == R.retry:
        log.info(
            "run %s of %s failed (%s); retrying%s",
            request.run_id,
            request.signature_key,
            type(exc).__name__,
            "" if request.engine_will_retry else " as a new run",
        )
        return exc
    if code in (R.ok, R.already) and not final and request.engine_will_retry:
        # MageFlow's budget is spent although the engine has attempts left
        # (they are counted differently): the engine must not run it again
        return NonRetryable(f"retries exhausted: {type(exc).__name__}: {exc}")
    return exc


async def _finish(
    runtime: MageflowRuntime,
    request: RunRequest,
    persist: _Persist,
    *,
    succeeded: bool,
    payload: Any,
    retries: int = -1,
) -> str:
    # The body has run: its outcome must be recorded even if Redis blips, or
    # the signature (and any container waiting on it) would stay active.
    store = runtime.store
    key = request.signature_key
    crash_point("finish:before", key)
    with _carrying(runtime) as sent:
        code, outbox = await persist(
            "finish",
            lambda: _locks.waiting_for_lock(
                store.config,
                key,
                lambda: store.finish(
                    key,
                    succeeded=succeeded,
                    run_id=request.run_id,
                    payload=payload,
                    attempt=persist.attempt,
                    retries=retries,
                    redispatch=not request.engine_will_retry,
                    sent=sent,
                ),
                store.config.lock_ttl + store.config.lock_wait,
            ),
        )
    crash_point("finish:after", key)
    if code not in (R.ok, R.already, R.retry):
        log.info("outcome of run %s for %s not recorded: %s", request.run_id, key, code)
        return code
    await _dispatch(runtime, persist, key, outbox)
    crash_point("dispatch:after", key)
    return code


async def _dispatch(
    runtime: MageflowRuntime, persist: _Persist, key: str, outbox: Sequence[OutboxEntry]
) -> None:
    """Send every dispatch a script claimed; raise the first failure after trying all."""
    if not outbox:
        return

    async def send(entry: OutboxEntry) -> tuple[DispatchRequest, DispatchResult] | None:
        return await persist(
            f"dispatch {entry.dispatch_id}", lambda: runtime._dispatch_entry(entry)
        )

    results = await asyncio.gather(*(send(entry) for entry in outbox), return_exceptions=True)
    # recorded by this worker's next BEGIN or FINISH: no round trip of its own
    runtime.run_ids.add(runtime.sent_runs([r for r in results if isinstance(r, tuple)]))
    failures = [r for r in results if isinstance(r, BaseException)]
    for failure in failures:
        if isinstance(failure, _StoreGaveUp):
            raise failure
    if failures:
        # Raising makes the engine redeliver the run; the redelivery drains
        # the outbox again and already-started dispatches skip themselves.
        # Claims stay in the pending index, so recover() sends them otherwise.
        raise failures[0]
