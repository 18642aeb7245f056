"""Wrapping a user's task function so it drives the signature lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, is_dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from hatchet_sdk import Context
from hatchet_sdk.exceptions import NonRetryableException
from hatchet_sdk.utils.timedelta_to_expression import expr_to_timedelta
from mageflow.engine import DISPATCH_ID_META, SIGNATURE_KEY_META, TASK_META, RunRequest
from pydantic import BaseModel
from thirdmagic.errors import ConfigurationError
from thirdmagic.params import AcceptParams
from thirdmagic.status import SignatureStatus

from mageflow_hatchet._errors import ExecutionTimeoutError, to_hatchet_signal

if TYPE_CHECKING:
    from mageflow import MageflowRuntime
    from thirdmagic.signature import Signature

__all__ = ["TaskFlags", "flags_of", "make_wrapper", "share_flags"]

log = logging.getLogger("mageflow.hatchet")

_FLAGS_ATTR = "__mageflow_flags__"


@dataclass
class TaskFlags:
    with_ctx: bool = False
    with_signature: bool = False
    stagger: timedelta | None = None


def flags_of(fn: Callable[..., Any], *, strict: bool = True) -> TaskFlags:
    """The per-task options of a task function, or of a task ``mf.task`` registered.

    A task registered by ``mf.task`` shares its function's flags, so
    ``with_ctx``/``with_signature``/``stagger_execution`` work above or below
    ``@mf.task``. Anything else (a task registered by Hatchet directly) is
    refused: the option would be silently ignored.
    """
    # A bound method cannot take attributes; its underlying function can.
    target = getattr(fn, "__func__", fn)
    flags = getattr(target, _FLAGS_ATTR, None)
    if isinstance(flags, TaskFlags):
        return flags
    if strict and not inspect.isfunction(target):
        raise ConfigurationError(
            f"{target!r} is neither a function nor a task registered with mf.task: "
            "with_ctx, with_signature and stagger_execution decorate the task function, "
            "above or below @mf.task"
        )
    flags = TaskFlags()
    # an object without attributes: options can only come from mf.task's flags
    with contextlib.suppress(AttributeError, TypeError):
        setattr(target, _FLAGS_ATTR, flags)
    return flags


def share_flags(task: Any, fn: Callable[..., Any]) -> None:
    """Let options applied to the registered task object reach the wrapped function."""
    setattr(task, _FLAGS_ATTR, flags_of(fn, strict=False))


def _seconds(value: Any, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)):
        return float(value)
    return expr_to_timedelta(str(value)).total_seconds()


def _output(value: Any) -> Any:
    # Hatchet accepts only JSON objects as task output; a bare value from a
    # signature run is wrapped so the run does not fail after it succeeded.
    if value is None or isinstance(value, (dict, BaseModel)) or is_dataclass(value):
        return value
    return {"mageflow_results": value}


def make_wrapper(
    fn: Callable[..., Any],
    *,
    runtime: Callable[[], MageflowRuntime],
    task_name: Callable[[], str],
    model: type[BaseModel] | None,
    param_config: AcceptParams,
    execution_timeout: Any,
    namespace: str = "",
    retries: int = 0,
) -> Callable[[Any, Context], Any]:
    flags = flags_of(fn, strict=False)
    timeout_s = _seconds(execution_timeout, 60.0)
    is_async = inspect.iscoroutinefunction(fn)

    async def call_user(msg: Any, ctx: Context, sig: Signature | None) -> Any:
        mode = AcceptParams.ALL if flags.with_ctx else param_config
        args: tuple[Any, ...]
        if mode is AcceptParams.CTX_ONLY:
            args = (ctx,)
        elif mode is AcceptParams.ALL:
            args = (msg, ctx)
        else:
            args = (msg,)
        kwargs: dict[str, Any] = {"signature": sig} if flags.with_signature else {}
        if is_async:
            return await fn(*args, **kwargs)
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def mageflow_task(input: Any, ctx: Context) -> Any:
        try:
            return await run_task(input, ctx)
        except Exception as exc:
            mapped = to_hatchet_signal(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    async def run_task(input: Any, ctx: Context) -> Any:
        # Hatchet's clock for this attempt started about now; everything below,
        # the stagger included, spends from the same budget.
        started = time.monotonic()
        budget = timeout_s
        if flags.stagger is not None:
            delay = random.uniform(0, flags.stagger.total_seconds())
            log.info("task %s staggered by %.3fs", task_name(), delay)
            # the spec logs the delay where the run's other logs are: Hatchet's run log
            ctx.log(f"mageflow: stagger_execution delays task {task_name()!r} by {delay:.3f}s")
            # the engine takes whole seconds: round up so its deadline moves at
            # least as far as the delay
            extension = math.ceil(delay)
            if extension:
                await ctx.aio_refresh_timeout(timedelta(seconds=extension))
            budget += extension
            await asyncio.sleep(delay)
        meta = ctx.additional_metadata or {}
        key = meta.get(SIGNATURE_KEY_META)
        meant_for = meta.get(TASK_META)
        name = task_name()
        if (
            not isinstance(key, str)
            or not key
            or (meant_for is not None and meant_for not in (name, name[len(namespace) :]))
        ):
            # a direct run, or a run started from inside a signature's task that
            # inherited its metadata: not a signature run of this task. The
            # engine has extra attempts for lost workers (lost_worker_attempts);
            # a direct run's failures still end after `retries` retries.
            try:
                return await call_user(input, ctx, None)
            except Exception as exc:
                if ctx.attempt_number > retries and not isinstance(exc, NonRetryableException):
                    raise NonRetryableException(f"{type(exc).__name__}: {exc}") from exc
                raise

        # Stop a little before Hatchet's own deadline so the timeout is
        # counted by MageFlow (a retry, or on the last attempt the final
        # failure with its error callbacks) instead of ending the attempt in
        # the engine's hands.
        margin = min(2.0, max(0.5, budget * 0.1))
        deadline = started + budget - margin

        async def body(arg: Any, sig: Signature) -> Any:
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.05)):
                    return await call_user(arg, ctx, sig)
            except TimeoutError as exc:
                raise ExecutionTimeoutError(
                    f"task {task_name()!r} exceeded its execution timeout of {budget:.1f}s"
                ) from exc

        def final(exc: BaseException) -> bool:
            # Not ctx.attempt_number: Hatchet also counts an attempt restarted
            # after a lost worker. Core counts application failures itself
            # against `retries`.
            return isinstance(exc, NonRetryableException)

        payload = (
            input.model_dump(mode="json", by_alias=True)
            if isinstance(input, BaseModel)
            else dict(input or {})
        )
        outcome = await runtime().execute_run(
            RunRequest(
                signature_key=key,
                dispatch_id=str(meta.get(DISPATCH_ID_META) or ""),
                run_id=ctx.workflow_run_id,
                payload=payload,
                body=body,
                is_final_failure=final,
                model=model,
                task_name=task_name(),
                retries=retries,
                attempt=f"{ctx.workflow_run_id}#{ctx.attempt_number}",
                engine_will_retry=ctx.attempt_number < ctx.max_attempts,
                deadline=started + budget,
            )
        )
        if not outcome.ran and outcome.reason == SignatureStatus.CANCELED.value:
            await _cancel_own_run(ctx, key)
        return _output(outcome.result) if outcome.ran else None

    mageflow_task.__name__ = getattr(fn, "__name__", "mageflow_task")
    mageflow_task.__qualname__ = getattr(fn, "__qualname__", mageflow_task.__name__)
    mageflow_task.__doc__ = fn.__doc__
    return mageflow_task


async def _cancel_own_run(ctx: Context, key: str) -> None:
    # A run that reaches a worker after its signature was cancelled skips its
    # body. Its run id may not have been stored yet when the cancel came (run
    # ids are recorded lazily), so the cancel could not stop it in the engine;
    # cancelling it here makes the engine agree with MageFlow (the run reads
    # CANCELLED, not COMPLETED) and sends no output.
    try:
        await ctx.aio_cancel()
    except Exception:  # the body was skipped all the same; only the engine's label is off
        log.warning(
            "run %s of cancelled signature %s could not cancel itself",
            ctx.workflow_run_id,
            key,
            exc_info=True,
        )
