"""The runtime: one store and one engine, and the facade over everything between them.

``MageflowRuntime`` is thin on purpose. The work lives in modules named after
their role, as functions taking the runtime:

* ``_build``: creating task, chain and swarm signatures;
* ``_worker``: one delivered attempt of a run, from BEGIN to FINISH;
* ``_lifecycle``: suspend/resume/interrupt/cancel and their side effects;
* ``_locks``: ``lock_task`` and waiting for another holder.

What stays here is what they share: the store, the task manager, task
descriptions, sending dispatches (the outbox) and starting containers.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel
from thirdmagic.backend import set_backend, use_backend
from thirdmagic.errors import (
    ConfigurationError,
    DispatchPendingError,
    DispatchRefusedError,
    EngineError,
    MageflowError,
    MageflowValidationError,
    SignatureNotFoundError,
)
from thirdmagic.outcome import ContainerProgress, resolve_error_field
from thirdmagic.signature import (
    ChainSignature,
    Signature,
    SwarmConfig,
    SwarmSignature,
    TaskSignature,
    import_model,
    to_json_value,
)
from thirdmagic.status import LifecycleEvent, TaskStatus

from mageflow import (
    _build,
    _bulk,
    _control,
    _handover,
    _lifecycle,
    _locks,
    _merge,
    _payloads,
    _reconcile,
    _worker,
)
from mageflow._results import DEFAULT_POLL_INTERVAL, ResultWaiter, error_payload
from mageflow._run_ids import RunIds, SentRun
from mageflow._store.redis_store import OutboxEntry, RedisStore
from mageflow.config import MageflowConfig
from mageflow.engine import (
    CancelRequest,
    DescribeRequest,
    DispatchRequest,
    DispatchResult,
    RunOutcome,
    RunRequest,
    TaskDescription,
    TaskManager,
)

__all__ = ["MageflowRuntime"]

log = logging.getLogger("mageflow")

_T = TypeVar("_T")


class MageflowRuntime:
    """Store + engine, and everything that happens between them.

    Implements ``thirdmagic.backend.SignatureBackend`` (what signature methods
    such as ``sig.aio_run_no_wait()`` call) and ``_lifecycle.Effects``.
    """

    def __init__(self, store: RedisStore, manager: TaskManager | None = None) -> None:
        self.store = store
        self.manager = manager
        self.config: MageflowConfig = store.config
        self._recording = asyncio.Semaphore(4)
        # run ids of the worker's dispatches, recorded by its next BEGIN/FINISH
        self.run_ids = RunIds(store)
        self.results = ResultWaiter(store)
        if manager is not None:
            manager.bind(self)

    def install(self) -> MageflowRuntime:
        """Make this runtime the process default behind module functions and signature methods."""
        set_backend(self)
        return self

    @contextmanager
    def activate(self) -> Iterator[MageflowRuntime]:
        """Use this runtime inside the block, in this context only (asyncio task, thread).

        Overrides the process default for ``mageflow.asign``, ``sig.aio_run_no_wait``
        and friends, so several runtimes (two key prefixes, two Redis servers)
        can serve one process; tasks started inside the block inherit it. A
        worker activates its runtime around every task body it runs.
        """
        with use_backend(self):
            yield self

    # -- shared helpers ----------------------------------------------------------

    @staticmethod
    def new_dispatch_id() -> str:
        return uuid.uuid4().hex

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
        return await _locks.waiting_for_lock(self.config, key, call, wait)

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

    # -- building signatures (_build) ---------------------------------------------

    async def sign(self, task: Any, **options: Any) -> TaskSignature:
        """Create and store a signature (one round trip)."""
        return await _build.sign(self, task, **options)

    async def sign_many(
        self, task: Any, items: Sequence[Any], **options: Any
    ) -> list[TaskSignature]:
        """One stored signature of ``task`` per item of bound kwargs (O(N / batch) round trips)."""
        return await _bulk.sign_many(self, task, items, **options)

    async def submit(self, spec: Any) -> Signature:
        """Store a FlowSpec / signature built elsewhere (all or nothing); return its root."""
        return await _handover.submit(self, spec)

    async def chain(
        self,
        tasks: Any,
        name: str | None = None,
        success: Any = None,
        error: Any = None,
        **kwargs: Any,
    ) -> ChainSignature:
        return await _build.chain(self, tasks, name, success, error, **kwargs)

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
        return await _build.swarm(
            self,
            tasks,
            success_callbacks,
            error_callbacks,
            config,
            is_swarm_closed,
            name,
            **kwargs,
        )

    async def swarm_add(
        self, signature: Signature, tasks: Any, msgs: Sequence[Any] | None
    ) -> list[str]:
        """Admit tasks into a swarm; with ``msgs`` each gets its own message."""
        return await _build.swarm_add(self, signature, tasks, msgs)

    async def swarm_close(self, key: str) -> None:
        await _build.swarm_close(self, key)

    async def load(self, key: str) -> Signature | None:
        return await self.store.load(key)

    # -- SignatureBackend ------------------------------------------------------------

    async def run(
        self, signature: Signature, msg: BaseModel | dict[str, Any] | None, options: dict[str, Any]
    ) -> None:
        self._manager()
        key = signature.key
        if isinstance(signature, (ChainSignature, SwarmSignature)):
            # a big message is stored once, with the container, not in every member's claim
            value = await _payloads.externalize(self.store, key, _merge.message_data(msg))
            await self.start_container(key, dispatch_id="", mode="merge", value=value, inherited={})
            return
        data = _merge.task_input(msg, dict(signature.kwargs))
        model = self.model_for(signature.task_name, signature.model_validators_path)
        if model is not None:
            validated = _merge.validate_input(model, data, key=key, task_name=signature.task_name)
            data = validated.model_dump(mode="json", by_alias=True)
        data = await _payloads.externalize(self.store, key, data)
        dispatch_id = self.new_dispatch_id()
        plain_options = {
            name: to_json_value(v, field=f"options.{name}") for name, v in options.items()
        }
        if signature.task_identifiers.get(_build.FIRE_AND_FORGET):
            await self._fire_and_forget(signature, data, dispatch_id, plain_options)
            return
        code = await self._waiting_for_lock(
            key,
            lambda: self.store.dispatch(
                key, data, dispatch_id, _locks.token(key), options=plain_options
            ),
        )
        if code == "parked":
            log.info("signature %s is suspended; its run is parked until resume", key)
            return
        request = DispatchRequest(
            task_name=signature.task_name,
            input=data,
            signature_key=key,
            dispatch_id=dispatch_id,
            options=plain_options,
        )
        try:
            result = await self._send(request)
        except DispatchRefusedError:
            # Nothing will run: take the claim back so the state is as before.
            await self.store.unclaim(key, dispatch_id)
            raise
        await self._record_runs([(request, result)])

    async def _fire_and_forget(
        self,
        signature: Signature,
        data: dict[str, Any],
        dispatch_id: str,
        options: dict[str, Any],
    ) -> None:
        # No claim: the run never reports back, so there is nothing to track.
        request = DispatchRequest(
            task_name=signature.task_name,
            input=data,
            signature_key=signature.key,
            dispatch_id=dispatch_id,
            options=options,
        )
        try:
            await self._send(request)
        except DispatchPendingError as exc:
            raise EngineError(
                f"dispatching fire-and-forget task {signature.task_name!r} (signature "
                f"{signature.key!r}) may or may not have reached the engine ({exc.__cause__}); "
                "it is not tracked, so MageFlow does not retry it"
            ) from exc

    async def add_callbacks(
        self, signature: Signature, success: list[str], errors: list[str]
    ) -> None:
        key = signature.key
        await self._waiting_for_lock(
            key, lambda: self.store.add_callbacks(key, success, errors, _locks.token(key))
        )

    async def remove(self, key: str, *, with_error: bool, with_success: bool) -> None:
        removed = await self._waiting_for_lock(
            key,
            lambda: self.store.remove(
                key,
                with_error=with_error,
                with_success=with_success,
                token=_locks.token(key),
                held=_locks.held(),
            ),
        )
        if not removed:
            # like pause/resume: a key that names nothing is an error, not a no-op
            raise SignatureNotFoundError(key)

    async def apply(self, key: str, event: LifecycleEvent) -> TaskStatus:
        """Apply a lifecycle event to ``key`` (and a container's members)."""
        return await _lifecycle.apply(self.store, self, key, event)

    async def update_kwargs(self, key: str, values: dict[str, Any]) -> None:
        plain = {name: to_json_value(v, field=f"kwargs.{name}") for name, v in values.items()}
        await self._waiting_for_lock(
            key, lambda: self.store.update_kwargs(key, plain, _locks.token(key))
        )

    # -- outcomes and steering (see _results.py, _control.py) -------------------

    async def result(
        self, key: str, timeout: float | None = None, poll_interval: float = DEFAULT_POLL_INTERVAL
    ) -> Any:
        return await self.results.wait(key, timeout, poll_interval)

    async def cancel(self, key: str, *, error_callbacks: bool = False) -> TaskStatus:
        return await _control.cancel(self, key, error_callbacks=error_callbacks)

    async def retry(self, key: str) -> TaskStatus:
        return await _control.retry(self, key)

    async def clone(self, signature: Signature, changes: dict[str, Any]) -> Signature:
        return await _control.clone(self, signature, changes)

    async def progress(self, key: str) -> ContainerProgress:
        return await _control.progress(self, key)

    # -- Effects (what lifecycle events do outside the store) -------------------------

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
        self,
        key: str,
        task_name: str,
        input_data: dict[str, Any],
        dispatch_id: str,
        options: dict[str, Any] | None = None,
    ) -> None:
        request = DispatchRequest(
            task_name=task_name,
            input=input_data,
            signature_key=key,
            dispatch_id=dispatch_id,
            options=options or {},
        )
        await self._record_runs([(request, await self._send(request))])

    async def dispatch_outbox(self, outbox: Sequence[OutboxEntry]) -> None:
        """Send every dispatch a script claimed; raise the first failure after trying all.

        A dispatch whose input does not fit its task's model, or that the
        engine refuses, never runs: its signature fails at once (its own
        error callbacks fire) instead of staying pending.
        """
        if not outbox:
            return
        results = await asyncio.gather(
            *(self._dispatch_entry(entry) for entry in outbox), return_exceptions=True
        )
        sent = [r for r in results if isinstance(r, tuple)]
        await self._record_runs(sent)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            # Raising makes the engine redeliver the run; the redelivery drains
            # the outbox again and already-started dispatches skip themselves.
            raise failures[0]

    async def resend(self, entry: OutboxEntry, options: dict[str, Any]) -> None:
        """Send a claimed dispatch again (the reconciler), with the caller's run options."""
        request = self._entry_request(entry, options)
        await self._record_runs([(request, await self._send(request))])

    async def flush(self) -> None:
        """Write what this runtime holds back: the run ids of its worker's last dispatches.

        A worker records them with its next BEGIN or FINISH, or after two
        quiet seconds; call this when a worker stops (the Hatchet worker's lifespan
        does) so none is left to the reconciler.
        """
        await self.run_ids.flush()

    @staticmethod
    def sent_runs(sent: Sequence[tuple[DispatchRequest, DispatchResult]]) -> list[SentRun]:
        """``(key, dispatch id, run id)`` of each accepted dispatch the engine named a run for."""
        return [(req.signature_key, req.dispatch_id, res.run_id) for req, res in sent if res.run_id]

    async def _record_runs(self, sent: Sequence[tuple[DispatchRequest, DispatchResult]]) -> None:
        runs = self.sent_runs(sent)
        if not runs:
            return
        try:
            # a few at a time: under a burst of completions these writes must
            # not take the connections the runs' own BEGIN/FINISH need
            async with self._recording:
                await self.store.record_runs(runs)
        except MageflowError:
            # The runs are queued; without their ids the reconciler re-sends
            # the claims later and the duplicates skip themselves.
            log.warning("could not record the run ids of %d dispatch(es)", len(runs), exc_info=True)

    async def _fail_unsent(self, entry: OutboxEntry, exc: BaseException) -> None:
        settled = await self.store.settle(
            entry.key,
            action="fail",
            dispatch_id=entry.dispatch_id,
            error=error_payload(exc, entry.key),
        )
        if settled.code == "ok":
            log.warning("signature %s failed before its run was sent: %s", entry.key, exc)
            await self.dispatch_outbox(settled.outbox)

    # -- locks (_locks) -----------------------------------------------------------------

    @asynccontextmanager
    async def lock(
        self, key: str, *, wait: timedelta | float | None = None
    ) -> AsyncIterator[Signature | None]:
        """Hold ``key``: no other caller changes its status or deletes it meanwhile.

        Yields the signature as read under the lock.
        """
        async with _locks.lock(self.store, key, wait=wait) as sig:
            yield sig

    # -- worker side (_worker) ----------------------------------------------------------

    async def execute_run(self, request: RunRequest) -> RunOutcome:
        """Drive one delivered attempt of a signature's run (see ``mageflow.engine.RunRequest``)."""
        return await _worker.execute_run(self, request)

    # -- dispatching ------------------------------------------------------------------------

    async def _send(self, request: DispatchRequest) -> DispatchResult:
        """Dispatch, with the error contract: refused (nothing runs) or pending (it will run)."""
        small = await _payloads.externalize(self.store, request.signature_key, request.input)
        if small is not request.input:
            request = request.model_copy(update={"input": small})
        try:
            return await self._manager().dispatch(request)
        except (DispatchRefusedError, DispatchPendingError):
            raise
        except Exception as exc:
            # Anything else leaves the outcome unknown: the claim stays, and
            # the reconciler re-sends it if the engine never got it.
            raise DispatchPendingError(
                f"dispatching task {request.task_name!r} for signature "
                f"{request.signature_key!r} may not have reached the engine ({exc}); "
                "the run is queued for retry and will run: do not run the signature again",
                key=request.signature_key,
            ) from exc

    async def _dispatch_entry(
        self, entry: OutboxEntry
    ) -> tuple[DispatchRequest, DispatchResult] | None:
        if entry.kind in ("chain", "swarm"):
            await self.start_container(
                entry.key,
                dispatch_id=entry.dispatch_id,
                mode=entry.mode,
                value=entry.value,
                inherited={**entry.inherited, **entry.kwargs},
            )
            return None
        try:
            request = self._entry_request(entry)
        except MageflowValidationError as exc:
            await self._fail_unsent(entry, exc)
            return None
        try:
            return request, await self._send(request)
        except DispatchRefusedError as exc:
            await self._fail_unsent(entry, exc)
            return None

    def _entry_request(
        self, entry: OutboxEntry, options: dict[str, Any] | None = None
    ) -> DispatchRequest:
        """The run a claimed entry stands for; its input validated when the model is known."""
        model = self.model_for(entry.task_name, entry.model_path)
        bound = {**entry.inherited, **entry.kwargs}
        if entry.mode == "inject":
            data = _merge.success_callback_input(model, bound, entry.value)
        else:
            original = entry.value if isinstance(entry.value, dict) else {}
            data = _merge.error_callback_input(original, bound)
            marked = resolve_error_field(model) if entry.error is not None else None
            if marked is not None:
                data[marked] = entry.error
        # a value stored by reference is resolved, then validated, on the worker
        by_ref = _payloads._ref_kind(data) is not None or any(
            _payloads._ref_kind(v) is not None for v in data.values()
        )
        if model is not None and not by_ref:
            validated = _merge.validate_input(model, data, key=entry.key, task_name=entry.task_name)
            data = validated.model_dump(mode="json", by_alias=True)
        return DispatchRequest(
            task_name=entry.task_name,
            input=data,
            signature_key=entry.key,
            dispatch_id=entry.dispatch_id,
            options=options or {},
        )

    # -- recovery -------------------------------------------------------------------------

    async def reconcile(
        self, older_than: timedelta | None = None, limit: int | None = None
    ) -> _reconcile.ReconcileReport:
        """One reconciler sweep: settle what went quiet by what the engine says.

        Claims and begun runs not heard of for ``older_than`` (default
        ``config.reconcile_after``) are looked up in the engine in one batched
        ``run_status`` call and settled by the table in docs/lifecycle.md:
        left alone while queued or running, failed (error callbacks fire
        once) or canceled when the engine says so, re-sent with the caller's
        run options when the engine never got them, at most
        ``config.reconcile_max_resends`` times. Safe to run from every worker
        at once.
        """
        age = self.config.reconcile_after if older_than is None else older_than
        return await _reconcile.reconcile(
            self,
            max(0, int(age.total_seconds() * 1000)),
            self.config.reconcile_batch if limit is None else limit,
        )

    async def recover(self, older_than: timedelta = timedelta(minutes=5), limit: int = 1000) -> int:
        """A reconciler sweep (:meth:`reconcile`); returns how many dispatches it sent again."""
        report = await self.reconcile(older_than, limit)
        return report.resent + report.restarted

    # -- containers -----------------------------------------------------------------------

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
                token=_locks.token(key),
                action="start",
                dispatch_id=dispatch_id,
                mode=mode,
                value=value,
                inherited=inherited,
                dispatch_prefix=self.new_dispatch_id(),
            ),
        )
        if code == "parked":
            log.info("container %s is suspended; it starts on resume", key)
        elif code != "ok":
            log.info("start of container %s skipped: %s", key, code)
        await self.dispatch_outbox(outbox)
