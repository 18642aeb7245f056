"""The worker path: one delivered attempt of a signature's run, from BEGIN to FINISH.

An adapter calls ``MageflowRuntime.execute_run`` for every run it receives
that carries a signature key; this module is what happens inside.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from thirdmagic.errors import StoreError
from thirdmagic.signature import to_json_value

from mageflow import _locks, _merge, _payloads
from mageflow._results import error_payload
from mageflow.engine import NonRetryable, RunOutcome, RunRequest

if TYPE_CHECKING:
    from mageflow._runtime import MageflowRuntime

__all__ = ["execute_run", "is_final"]

log = logging.getLogger("mageflow")

_FINISH_ATTEMPTS = 6


def is_final(request: RunRequest, exc: BaseException) -> bool:
    """Whether ``exc`` from the body ends the run: core's own signal, else the adapter's say."""
    return isinstance(exc, NonRetryable) or request.is_final_failure(exc)


async def execute_run(runtime: MageflowRuntime, request: RunRequest) -> RunOutcome:
    """Drive one delivered attempt of a signature's run (see ``mageflow.engine.RunRequest``).

    Cancellation propagates untouched: an interrupted run records nothing.
    """
    store = runtime.store
    key = request.signature_key
    lock_wait = store.config.lock_ttl + store.config.lock_wait
    begun = await _locks.waiting_for_lock(
        store.config,
        key,
        lambda: store.begin(key, request.dispatch_id, request.run_id, request.payload),
        lock_wait,
    )
    if begun.decision == "skip":
        log.info("run %s of %s skipped: %s", request.run_id, key, begun.reason)
        return RunOutcome(ran=False, reason=begun.reason)
    if begun.decision == "park":
        log.info("signature %s is suspended; run %s parked until resume", key, request.run_id)
        return RunOutcome(ran=False, reason="parked")
    if begun.decision == "drain":
        await runtime.dispatch_outbox(begun.outbox)
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
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        if is_final(request, exc):
            await _complete(
                runtime,
                key,
                request.run_id,
                succeeded=False,
                payload=error_payload(exc, key),
            )
        raise
    await _complete(runtime, key, request.run_id, succeeded=True, payload=plain)
    # a result too big for the engine reaches it as its reference
    return RunOutcome(ran=True, result=plain if by_reference else result)


async def _complete(
    runtime: MageflowRuntime, key: str, run_id: str, *, succeeded: bool, payload: Any
) -> None:
    # The body has run: its outcome must be recorded even if Redis blips,
    # or the signature (and any container waiting on it) would stay active.
    # FINISH is idempotent, so retrying it is safe.
    store = runtime.store
    attempts = 0
    while True:
        try:
            code, outbox = await _locks.waiting_for_lock(
                store.config,
                key,
                lambda: store.finish(key, succeeded=succeeded, run_id=run_id, payload=payload),
                store.config.lock_ttl + store.config.lock_wait,
            )
            break
        except StoreError:
            attempts += 1
            if attempts >= _FINISH_ATTEMPTS:
                raise
            log.warning("recording the outcome of %s failed; retrying", key, exc_info=True)
            await asyncio.sleep(min(0.1 * 2**attempts, 2.0))
    if code not in ("ok", "already"):
        log.info("outcome of run %s for %s not recorded: %s", run_id, key, code)
        return
    await runtime.dispatch_outbox(outbox)
