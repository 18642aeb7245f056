"""The orchestration core shared by every engine adapter."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from thirdmagic.backend import set_backend
from thirdmagic.errors import (
    ConfigurationError,
    EngineError,
    InvalidTransitionError,
    MageflowError,
    MageflowValidationError,
    SignatureLockedError,
    SignatureNotFoundError,
    StoreError,
)
from thirdmagic.signature import (
    ChainSignature,
    Signature,
    SwarmConfig,
    SwarmSignature,
    TaskSignature,
    import_model,
    to_json_value,
    validation_error,
)
from thirdmagic.status import LifecycleEvent, SignatureStatus, TaskStatus

from mageflow import _handover, _merge
from mageflow._intake import check_kwargs, check_new
from mageflow._store.redis_store import LockedSignal, OutboxEntry, RedisStore
from mageflow.config import MageflowConfig
from mageflow.lifecycle import HANDLERS
from mageflow.manager import (
    CancelRequest,
    DescribeRequest,
    DispatchRequest,
    TaskDescription,
    TaskManager,
)

__all__ = ["MageflowRuntime", "RunOutcome", "RunRequest"]

log = logging.getLogger("mageflow")

_T = TypeVar("_T")
_held_locks: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("mageflow_held_locks")
_SIGNATURE_OPTIONS = frozenset(
    {
        "kwargs",
        "creation_time",
        "model_validators",
        "success_callbacks",
        "error_callbacks",
        "task_status",
        "task_identifiers",
        "key",
        "id",
    }
)


_validation_error = validation_error


_FINISH_ATTEMPTS = 6


def _token(key: str) -> str:
    return _held_locks.get({}).get(key, "")


def _new_dispatch_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class RunRequest:
    """A run delivered to a worker, as the adapter saw it."""

    signature_key: str
    dispatch_id: str
    run_id: str
    payload: dict[str, Any]
    model: type[BaseModel] | None = None
    task_name: str = ""


@dataclass(frozen=True, slots=True)
class RunOutcome:
    ran: bool
    result: Any = None
    reason: str = ""


class MageflowRuntime:
    """Store + engine, and everything that happens between them."""

    def __init__(self, store: RedisStore, manager: TaskManager | None = None) -> None:
        self.store = store
        self.manager = manager
        self.config: MageflowConfig = store.config
        attach = getattr(manager, "attach", None)
        if callable(attach):
            attach(self)

    def install(self) -> MageflowRuntime:
        """Make this runtime the one behind ``thirdmagic`` signature methods."""
        set_backend(self)
        return self

    # -- helpers -------------------------------------------------------------

    def _manager(self) -> TaskManager:
        if self.manager is None:
            raise ConfigurationError(
                "no task manager is configured: create a Mageflow client for your engine, or "
                "pass manager=... to mageflow.configure()"
            )
        return self.manager

    async def _waiting_for_lock(
        self, key: str, call: Callable[[], Awaitable[_T]], wait: timedelta | None = None
    ) -> _T:
        deadline = time.monotonic() + (wait or self.config.lock_wait).total_seconds()
        interval = self.config.lock_poll_interval.total_seconds()
        started = time.monotonic()
        while True:
            try:
                return await call()
            except LockedSignal:
                if time.monotonic() >= deadline:
                    raise SignatureLockedError(key, time.monotonic() - started) from None
                await asyncio.sleep(interval)
                interval = min(interval * 2, 0.5)

    def describe(self, task: Any) -> TaskDescription | None:
        if self.manager is None:
            return None
        return self.manager.describe(DescribeRequest(task=task))

    def model_for(
        self, task_name: str, model_path: str | type[BaseModel] | None
    ) -> type[BaseModel] | None:
        if isinstance(model_path, type):
            return model_path
        if model_path:
            try:
                return import_model(model_path)
            except MageflowValidationError:
                log.warning(
                    "cannot import model %s of task %s; its input is not validated",
                    model_path,
                    task_name,
                )
        described = self.describe(task_name)
        return described.input_model if described else None

    # -- signatures ----------------------------------------------------------

    async def sign(self, task: Any, **options: Any) -> TaskSignature:
        """Create and store a signature (one round trip)."""
        if isinstance(task, TaskSignature):
            return await self._sign_unsaved(task, options)
        fields: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for name, value in options.items():
            (fields if name in _SIGNATURE_OPTIONS else extra)[name] = value
        if "id" in fields:
            fields.setdefault("key", fields.pop("id"))
        given = fields.pop("kwargs", None) or {}
        if isinstance(given, BaseModel):
            given = given.model_dump(mode="json")
        if not isinstance(given, dict):
            raise MageflowValidationError(
                f"kwargs: expected a mapping of names to values, got {type(given).__name__}",
                field="kwargs",
            )
        check_kwargs(extra, given, _SIGNATURE_OPTIONS)
        bound = {**given, **extra}
        task_name, model = self._resolve_task(task)
        local = model is not None and "<locals>" in model.__qualname__
        if model is not None and not local and "model_validators" not in fields:
            fields["model_validators"] = model
        status = fields.get("task_status")
        if isinstance(status, (str, SignatureStatus)):
            if status not in set(SignatureStatus):
                raise MageflowValidationError(
                    f"task_status: {status!r} is not one of "
                    f"{', '.join(s.value for s in SignatureStatus)}",
                    field="task_status",
                )
            fields["task_status"] = TaskStatus(status=SignatureStatus(status))
        try:
            sig = TaskSignature(task_name=task_name, kwargs=bound, **fields)
        except ValidationError as exc:
            raise _validation_error(exc) from exc
        check_new(sig)
        await self.store.create(sig, [*sig.success_callbacks, *sig.error_callbacks])
        return sig

    async def _sign_unsaved(self, sig: TaskSignature, options: dict[str, Any]) -> TaskSignature:
        # a signature built with thirdmagic alone: store it as it is
        if options:
            raise MageflowValidationError(
                f"{next(iter(options))}: options cannot be combined with a signature object; "
                "set them on the signature",
                field=next(iter(options)),
            )
        await _handover.submit(self, sig)
        return sig

    async def submit(self, spec: Any) -> Signature:
        """Store a FlowSpec / signature built elsewhere (all or nothing); return its root."""
        return await _handover.submit(self, spec)

    def _resolve_task(self, task: Any) -> tuple[str, type[BaseModel] | None]:
        if isinstance(task, str):
            if not task.strip():
                raise MageflowValidationError("task: expected a non-empty task name", field="task")
            described = self.describe(task)
            return task, (described.input_model if described else None)
        described = self.describe(task)
        if described is not None:
            return described.name, described.input_model
        name = getattr(task, "name", None)
        if isinstance(name, str) and name:
            model = getattr(task, "input_validator_type", None) or getattr(
                task, "input_validator", None
            )
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                model = None
            return name, model
        raise MageflowValidationError(
            f"task: expected a task name or a task object of the configured engine, "
            f"got {type(task).__name__}",
            field="task",
        )

    async def load(self, key: str) -> Signature | None:
        return await self.store.load(key)

    # -- SignatureBackend ------------------------------------------------------

    async def run(
        self, signature: Signature, msg: BaseModel | dict[str, Any] | None, options: dict[str, Any]
    ) -> None:
        self._manager()
        key = signature.key
        if isinstance(signature, (ChainSignature, SwarmSignature)):
            await self.start_container(
                key, dispatch_id="", mode="merge", value=_merge.message_data(msg), inherited={}
            )
            return
        data = _merge.task_input(msg, dict(signature.kwargs))
        model = self.model_for(signature.task_name, signature.model_validators_path)
        if model is not None:
            validated = _merge.validate_input(model, data, key=key, task_name=signature.task_name)
            data = validated.model_dump(mode="json", by_alias=True)
        dispatch_id = _new_dispatch_id()
        code = await self._waiting_for_lock(
            key, lambda: self.store.dispatch(key, data, dispatch_id, _token(key))
        )
        if code == "parked":
            log.info("signature %s is suspended; its run is parked until resume", key)
            return
        await self._send(
            DispatchRequest(
                task_name=signature.task_name,
                input=data,
                signature_key=key,
                dispatch_id=dispatch_id,
                options=options,
            )
        )

    async def _send(self, request: DispatchRequest) -> None:
        try:
            await self._manager().dispatch(request)
        except MageflowError:
            raise
        except Exception as exc:
            raise EngineError(
                f"dispatching task {request.task_name!r} for signature "
                f"{request.signature_key!r} failed: {exc}"
            ) from exc

    async def add_callbacks(
        self, signature: Signature, success: list[str], errors: list[str]
    ) -> None:
        key = signature.key
        await self._waiting_for_lock(
            key, lambda: self.store.add_callbacks(key, success, errors, _token(key))
        )

    async def remove(self, key: str, *, with_error: bool, with_success: bool) -> None:
        removed = await self._waiting_for_lock(
            key,
            lambda: self.store.remove(
                key,
                with_error=with_error,
                with_success=with_success,
                token=_token(key),
                held=_held_locks.get({}),
            ),
        )
        if not removed:
            # like pause/resume: a key that names nothing is an error, not a no-op
            raise SignatureNotFoundError(key)

    async def apply(self, key: str, event: LifecycleEvent) -> TaskStatus:
        status, kind = await self._apply_one(key, event)
        if kind in ("chain", "swarm"):
            sig = await self.store.load(key)
            if sig is None:
                return status
            # Members first, then the container moves on: on resume a swarm
            # refills its free slots only once its members can run again.
            for member in await self.store.members(sig):
                try:
                    await self.apply(member, event)
                except (InvalidTransitionError, SignatureNotFoundError):
                    continue  # finished or removed members keep their state
            if event is LifecycleEvent.RESUME:
                await self._kick(key)
        return status

    async def _kick(self, key: str) -> None:
        _, outbox = await self._waiting_for_lock(
            key,
            lambda: self.store.advance(
                key, token=_token(key), action="kick", dispatch_prefix=_new_dispatch_id()
            ),
        )
        await self._dispatch_outbox(outbox)

    async def _apply_one(self, key: str, event: LifecycleEvent) -> tuple[TaskStatus, str]:
        result = await self._waiting_for_lock(
            key, lambda: self.store.transition(key, event, _token(key), _new_dispatch_id())
        )
        if result.changed and result.previous is not None:
            await HANDLERS[(result.previous, event)](self, key, result)
        elif event is LifecycleEvent.INTERRUPT and result.run_id:
            # Repeating an interrupt retries a cancel that may have been lost.
            await HANDLERS[(SignatureStatus.ACTIVE, event)](self, key, result)
        return TaskStatus(status=result.status, last_status=result.previous), result.kind

    async def update_kwargs(self, key: str, values: dict[str, Any]) -> None:
        plain = {name: to_json_value(v, field=f"kwargs.{name}") for name, v in values.items()}
        await self._waiting_for_lock(key, lambda: self.store.update_kwargs(key, plain, _token(key)))

    # -- used by lifecycle handlers -------------------------------------------

    async def cancel_run(self, key: str, run_id: str) -> None:
        try:
            await self._manager().cancel(CancelRequest(run_id=run_id, signature_key=key))
        except MageflowError:
            raise
        except Exception as exc:
            raise EngineError(
                f"cancelling run {run_id!r} of signature {key!r} failed: {exc}"
            ) from exc

    async def redispatch(
        self, key: str, task_name: str, input_data: dict[str, Any], dispatch_id: str
    ) -> None:
        await self._send(
            DispatchRequest(
                task_name=task_name,
                input=input_data,
                signature_key=key,
                dispatch_id=dispatch_id,
            )
        )

    # -- locks ----------------------------------------------------------------

    @asynccontextmanager
    async def lock(
        self, key: str, *, wait: timedelta | float | None = None
    ) -> AsyncIterator[Signature | None]:
        """Hold ``key``: no other caller changes its status or deletes it meanwhile.

        Yields the signature as read under the lock.
        """
        held = _held_locks.get({})
        if key in held:
            yield await self.store.load(key)
            return
        token = uuid.uuid4().hex
        wait_td = timedelta(seconds=wait) if isinstance(wait, (int, float)) else wait

        async def acquire() -> Signature:
            got = await self.store.lock_and_load(key, token)
            if got is None:
                raise LockedSignal(key)
            return got

        sig = await self._waiting_for_lock(key, acquire, wait_td)
        reset = _held_locks.set({**held, key: token})
        try:
            async with AsyncExitStack() as members:
                # A container is held as a whole: its members (recursively) too,
                # so no step or member changes status while the lock is held.
                if isinstance(sig, (ChainSignature, SwarmSignature)):
                    for member in await self.store.members(sig):
                        try:
                            await members.enter_async_context(self.lock(member, wait=wait))
                        except SignatureNotFoundError:
                            continue
                yield sig
        finally:
            _held_locks.reset(reset)
            await self.store.release_lock(key, token)

    # -- worker side -----------------------------------------------------------

    async def execute_run(
        self,
        request: RunRequest,
        body: Callable[[Any, Signature], Awaitable[Any]],
        is_final_failure: Callable[[BaseException], bool],
    ) -> RunOutcome:
        """Drive one delivered attempt of a signature's run.

        ``body`` receives the validated input (a model instance when the task
        has a model, else the dict) and the signature. ``is_final_failure``
        tells whether an exception ends the run (no retry will follow), which
        is when error callbacks fire. Cancellation propagates untouched: an
        interrupted run records nothing.
        """
        key = request.signature_key
        lock_wait = self.config.lock_ttl + self.config.lock_wait
        begun = await self._waiting_for_lock(
            key,
            lambda: self.store.begin(key, request.dispatch_id, request.run_id, request.payload),
            lock_wait,
        )
        if begun.decision == "skip":
            log.info("run %s of %s skipped: %s", request.run_id, key, begun.reason)
            return RunOutcome(ran=False, reason=begun.reason)
        if begun.decision == "park":
            log.info("signature %s is suspended; run %s parked until resume", key, request.run_id)
            return RunOutcome(ran=False, reason="parked")
        if begun.decision == "drain":
            await self._dispatch_outbox(begun.outbox)
            return RunOutcome(ran=False, reason="drained")
        sig = begun.signature
        assert sig is not None
        data = request.payload
        # Input that does not fit and a return value that is not JSON end the
        # attempt like an exception from the body: otherwise the signature would
        # stay active forever and no error callback would fire.
        try:
            model = request.model or self.model_for(sig.task_name, sig.model_validators_path)
            data = _merge.rebind_at_start(request.payload, dict(sig.kwargs), model)
            arg: Any = data
            if model is not None:
                arg = _merge.validate_input(model, data, key=key, task_name=sig.task_name)
            result = await body(arg, sig)
            plain = to_json_value(result, field=f"return value of {sig.task_name}")
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if is_final_failure(exc):
                await self._complete(
                    key,
                    request.run_id,
                    succeeded=False,
                    payload=f"{type(exc).__name__}: {exc}",
                    original=data,
                )
            raise
        await self._complete(key, request.run_id, succeeded=True, payload=plain, original=data)
        return RunOutcome(ran=True, result=result)

    async def _complete(
        self, key: str, run_id: str, *, succeeded: bool, payload: Any, original: dict[str, Any]
    ) -> None:
        # The body has run: its outcome must be recorded even if Redis blips,
        # or the signature (and any container waiting on it) would stay active.
        # FINISH is idempotent, so retrying it is safe.
        attempts = 0
        while True:
            try:
                code, outbox = await self._waiting_for_lock(
                    key,
                    lambda: self.store.finish(
                        key, succeeded=succeeded, run_id=run_id, payload=payload
                    ),
                    self.config.lock_ttl + self.config.lock_wait,
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
        await self._dispatch_outbox(outbox)

    async def _dispatch_outbox(self, outbox: Sequence[OutboxEntry]) -> None:
        if not outbox:
            return
        results = await asyncio.gather(
            *(self._dispatch_entry(entry) for entry in outbox), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            # Raising makes the engine redeliver the run; the redelivery drains
            # the outbox again and already-started dispatches skip themselves.
            raise failures[0]

    async def _dispatch_entry(self, entry: OutboxEntry) -> None:
        if entry.kind in ("chain", "swarm"):
            await self.start_container(
                entry.key,
                dispatch_id=entry.dispatch_id,
                mode=entry.mode,
                value=entry.value,
                inherited={**entry.inherited, **entry.kwargs},
            )
            return
        await self._send(self._entry_request(entry))

    def _entry_request(self, entry: OutboxEntry) -> DispatchRequest:
        model = self.model_for(entry.task_name, entry.model_path)
        bound = {**entry.inherited, **entry.kwargs}
        if entry.mode == "inject":
            data = _merge.success_callback_input(model, bound, entry.value)
        else:
            original = entry.value if isinstance(entry.value, dict) else {}
            data = _merge.error_callback_input(original, bound)
        return DispatchRequest(
            task_name=entry.task_name,
            input=data,
            signature_key=entry.key,
            dispatch_id=entry.dispatch_id,
        )

    # -- recovery ---------------------------------------------------------------

    async def recover(self, older_than: timedelta = timedelta(minutes=5), limit: int = 1000) -> int:
        """Send again every claimed dispatch whose run has not arrived in ``older_than``.

        A dispatch is claimed in Redis before it is sent to the engine; if the
        process dies in between, or the engine refuses it, the claim stays in
        the pending index and this finds it. A dispatch that did go through is
        harmless to send again: whichever run arrives first owns the dispatch
        and the other skips itself. Returns how many were sent.
        """
        entries = await self.store.due_dispatches(
            max(0, int(older_than.total_seconds() * 1000)), limit
        )
        if entries:
            log.warning("recovering %d dispatch(es) whose run never arrived", len(entries))
            await self._dispatch_outbox(entries)
        return len(entries)

    # -- containers -------------------------------------------------------------

    async def start_container(
        self,
        key: str,
        *,
        dispatch_id: str,
        mode: str,
        value: Any,
        inherited: dict[str, Any],
    ) -> None:
        """Start a chain or swarm: its first step, or its first members up to the cap."""
        code, outbox = await self._waiting_for_lock(
            key,
            lambda: self.store.advance(
                key,
                token=_token(key),
                action="start",
                dispatch_id=dispatch_id,
                mode=mode,
                value=value,
                inherited=inherited,
                dispatch_prefix=_new_dispatch_id(),
            ),
        )
        if code == "parked":
            log.info("container %s is suspended; it starts on resume", key)
        elif code != "ok":
            log.info("start of container %s skipped: %s", key, code)
        await self._dispatch_outbox(outbox)

    async def _member_keys(self, tasks: Any, field: str) -> list[str]:
        return (await _handover.member_keys(self, tasks))[0]

    async def chain(
        self,
        tasks: Any,
        name: str | None = None,
        success: Any = None,
        error: Any = None,
        **kwargs: Any,
    ) -> ChainSignature:
        if not isinstance(tasks, (list, tuple)) or len(tasks) < 2:
            raise MageflowValidationError(
                "tasks: a chain needs a list of two or more tasks", field="tasks"
            )
        fields = {k: kwargs.pop(k) for k in list(kwargs) if k in _SIGNATURE_OPTIONS}
        if "id" in fields:
            fields.setdefault("key", fields.pop("id"))
        bound = dict(fields.pop("kwargs", None) or {})
        check_kwargs(kwargs, bound, {*_SIGNATURE_OPTIONS, "success", "error", "name", "tasks"})
        bound.update(kwargs)
        try:
            sig = ChainSignature(
                task_name=name or "mageflow.chain",
                kwargs=bound,
                success_callbacks=success or fields.pop("success_callbacks", None) or [],
                error_callbacks=error or fields.pop("error_callbacks", None) or [],
                **fields,
            )
        except ValidationError as exc:
            raise _validation_error(exc) from exc
        check_new(sig)
        members, created = await _handover.member_keys(self, tasks)
        sig.tasks = members
        try:
            await self.store.create(
                sig, [*sig.success_callbacks, *sig.error_callbacks], members=members
            )
        except BaseException:
            await _handover.discard(self, created)
            raise
        return sig

    async def swarm(
        self,
        tasks: Any = None,
        success_callbacks: Any = None,
        error_callbacks: Any = None,
        config: SwarmConfig | None = None,
        is_swarm_closed: bool = False,
        name: str | None = None,
        **kwargs: Any,
    ) -> SwarmSignature:
        fields = {k: kwargs.pop(k) for k in list(kwargs) if k in _SIGNATURE_OPTIONS}
        if "id" in fields:
            fields.setdefault("key", fields.pop("id"))
        bound = dict(fields.pop("kwargs", None) or {})
        check_kwargs(
            kwargs, bound, {*_SIGNATURE_OPTIONS, "tasks", "config", "is_swarm_closed", "name"}
        )
        bound.update(kwargs)
        if config is not None and not isinstance(config, SwarmConfig):
            raise MageflowValidationError(
                f"config: expected a SwarmConfig, got {type(config).__name__}", field="config"
            )
        try:
            sig = SwarmSignature(
                task_name=name or "mageflow.swarm",
                kwargs=bound,
                config=config or SwarmConfig(),
                success_callbacks=success_callbacks or [],
                error_callbacks=error_callbacks or [],
                **fields,
            )
        except ValidationError as exc:
            raise _validation_error(exc) from exc
        check_new(sig)
        await self.store.create(sig, [*sig.success_callbacks, *sig.error_callbacks])
        if tasks:
            await self.swarm_add(sig, tasks, None)
        if is_swarm_closed:
            await self.swarm_close(sig.key)
            sig.is_swarm_closed = True
        return sig

    async def swarm_add(
        self, signature: Signature, tasks: Any, msgs: Sequence[Any] | None
    ) -> list[str]:
        """Admit tasks into a swarm; with ``msgs`` each gets its own message."""
        key = signature.key
        count = len(tasks) if isinstance(tasks, (list, tuple)) else 1
        if msgs is not None and len(msgs) != count:
            raise MageflowValidationError(
                f"msgs: expected one message per task ({count}), got {len(msgs)}",
                field="msgs",
            )
        members, created = await _handover.member_keys(self, tasks)
        try:
            pairs = [
                (m, _merge.message_data(msgs[i]) if msgs is not None else None)
                for i, m in enumerate(members)
            ]
            outbox = await self._waiting_for_lock(
                key,
                lambda: self.store.swarm_add(
                    key, pairs, token=_token(key), dispatch_prefix=_new_dispatch_id()
                ),
            )
        except BaseException:
            # refused (closed, full, locked ...): members signed for it go too
            await _handover.discard(self, created)
            raise
        await self._dispatch_outbox(outbox)
        return members

    async def swarm_close(self, key: str) -> None:
        outbox = await self._waiting_for_lock(
            key,
            lambda: self.store.swarm_close(
                key, token=_token(key), dispatch_prefix=_new_dispatch_id()
            ),
        )
        await self._dispatch_outbox(outbox)
