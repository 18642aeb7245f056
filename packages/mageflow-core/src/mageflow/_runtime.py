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
    _worker,
)
from mageflow._results import DEFAULT_POLL_INTERVAL, ResultWaiter
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
        code = await self._waiting_for_lock(
            key, lambda: self.store.dispatch(key, data, dispatch_id, _locks.token(key))
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

    async def dispatch_outbox(self, outbox: Sequence[OutboxEntry]) -> None:
        """Send every dispatch a script claimed; raise the first failure after trying all."""
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
        small = await _payloads.externalize(self.store, request.signature_key, request.input)
        if small is not request.input:
            request = request.model_copy(update={"input": small})
        try:
            return await self._manager().dispatch(request)
        except MageflowError:
            raise
        except Exception as exc:
            raise EngineError(
                f"dispatching task {request.task_name!r} for signature "
                f"{request.signature_key!r} failed: {exc}"
            ) from exc

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
            marked = resolve_error_field(model) if entry.error is not None else None
            if marked is not None:
                data[marked] = entry.error
        return DispatchRequest(
            task_name=entry.task_name,
            input=data,
            signature_key=entry.key,
            dispatch_id=entry.dispatch_id,
        )

    # -- recovery -------------------------------------------------------------------------

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
            await self.dispatch_outbox(entries)
        return len(entries)

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
