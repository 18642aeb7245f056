"""Building signatures: tasks, chains and swarms, stored in one round trip each.

Module functions taking the runtime, which they need for the store, for
``describe`` (task name and model of a task object) and for dispatching what a
swarm admits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from thirdmagic.errors import MageflowValidationError
from thirdmagic.signature import (
    ChainSignature,
    Signature,
    SwarmConfig,
    SwarmSignature,
    TaskSignature,
)
from thirdmagic.signature import validation_error as _validation_error
from thirdmagic.status import SignatureStatus, TaskStatus

from mageflow import _admission, _handover, _locks
from mageflow._intake import check_kwargs, check_new

if TYPE_CHECKING:
    from mageflow._runtime import MageflowRuntime

__all__ = [
    "FIRE_AND_FORGET",
    "chain",
    "sign",
    "split_options",
    "swarm",
    "swarm_add",
    "swarm_close",
]

FIRE_AND_FORGET = "mageflow_fire_and_forget"
"""Task identifier marking a signature of a task that never reports back (see ``sign``)."""

SIGNATURE_OPTIONS = frozenset(
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


def validation_error(exc: ValidationError) -> MageflowValidationError:
    """The MageflowValidationError a model validator raised (pydantic wraps it), or
    one built from the first error, naming the field (with its path)."""
    return _validation_error(exc)


_CHAIN_OPTIONS = frozenset({"success", "error", "name", "tasks"})
_SWARM_OPTIONS = frozenset({"tasks", "config", "is_swarm_closed", "name"})


def split_options(
    options: dict[str, Any], also: frozenset[str] = frozenset()
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(signature fields, bound kwargs)`` from the keywords of ``asign``/``achain``/``aswarm``.

    A keyword naming a signature field sets that field (``id`` is the legacy
    name of ``key``); ``kwargs=`` and every other keyword are bound kwargs.
    """
    fields: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for name, value in options.items():
        (fields if name in SIGNATURE_OPTIONS else extra)[name] = value
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
    # a misspelled option or a signature as a kwarg value is refused, not bound
    check_kwargs(extra, given, SIGNATURE_OPTIONS | also)
    return fields, {**given, **extra}


async def sign(runtime: MageflowRuntime, task: Any, **options: Any) -> TaskSignature:
    """Create and store a signature (one round trip).

    A task the engine runs without MageFlow (a plain ``hatchet.task``, a DAG
    workflow) can never report its outcome, so signing it is refused, unless
    ``fire_and_forget=True``: then no callbacks are allowed, and running it
    sends the run without a claim — MageFlow neither tracks, reconciles nor
    re-sends it, and the signature stays ``pending``.
    """
    if isinstance(task, TaskSignature):
        return await _sign_unsaved(runtime, task, options)
    sig = task_signature(runtime, task, **options)
    await runtime.store.create(sig, [*sig.success_callbacks, *sig.error_callbacks])
    return sig


def task_signature(runtime: MageflowRuntime, task: Any, **options: Any) -> TaskSignature:
    """A validated, not yet stored signature of ``task`` (the keywords of ``asign``)."""
    forget = options.pop("fire_and_forget", False)
    if not isinstance(forget, bool):
        raise MageflowValidationError(
            f"fire_and_forget: expected True or False, got {forget!r}", field="fire_and_forget"
        )
    fields, bound = split_options(options)
    task_name, model, managed = resolve_task(runtime, task)
    if forget:
        for name in ("success_callbacks", "error_callbacks"):
            if fields.get(name):
                raise MageflowValidationError(
                    f"{name}: a fire_and_forget signature cannot have callbacks: its run "
                    "never reports an outcome",
                    field=name,
                )
        fields["task_identifiers"] = {
            **(fields.get("task_identifiers") or {}),
            FIRE_AND_FORGET: True,
        }
    elif not managed:
        raise MageflowValidationError(
            f"task: {task_name!r} is not registered through the MageFlow client, so its runs "
            "can never report back (callbacks would never fire and the signature would stay "
            "pending); declare it with the MageFlow client's task decorator, or pass "
            "fire_and_forget=True to send it untracked, without callbacks",
            field="task",
        )
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
        raise validation_error(exc) from exc
    check_new(sig)
    return sig


async def _sign_unsaved(
    runtime: MageflowRuntime, sig: TaskSignature, options: dict[str, Any]
) -> TaskSignature:
    # a signature built with thirdmagic alone: store it as it is
    if options:
        first = next(iter(options))
        raise MageflowValidationError(
            f"{first}: options cannot be combined with a signature object; set them on it",
            field=first,
        )
    await _handover.submit(runtime, sig)
    return sig


def resolve_task(runtime: MageflowRuntime, task: Any) -> tuple[str, type[BaseModel] | None, bool]:
    """Task name, input model and whether it reports back (``managed``), of a
    task name or a task object of the engine.

    A task name this process does not know is taken as managed: the worker
    that runs it may live elsewhere.
    """
    if isinstance(task, str):
        if not task.strip():
            raise MageflowValidationError("task: expected a non-empty task name", field="task")
        described = runtime.describe(task)
        if described is None:
            return task, None, True
        return task, described.input_model, described.managed
    described = runtime.describe(task)
    if described is not None:
        return described.name, described.input_model, described.managed
    raise MageflowValidationError(
        f"task: expected a task name or a task object of the configured engine, "
        f"got {type(task).__name__}",
        field="task",
    )


async def member_keys(runtime: MageflowRuntime, tasks: Any) -> list[str]:
    """Keys for a list of signatures (stored or not), keys, task names or task objects.

    See ``_handover.member_keys``, which also returns what it created.
    """
    return (await _handover.member_keys(runtime, tasks))[0]


async def chain(
    runtime: MageflowRuntime,
    tasks: Any,
    name: str | None = None,
    success: Any = None,
    error: Any = None,
    **options: Any,
) -> ChainSignature:
    if not isinstance(tasks, (list, tuple)) or len(tasks) < 2:
        raise MageflowValidationError(
            "tasks: a chain needs a list of two or more tasks", field="tasks"
        )
    fields, bound = split_options(options, _CHAIN_OPTIONS)
    try:
        sig = ChainSignature(
            task_name=name or "mageflow.chain",
            kwargs=bound,
            success_callbacks=success or fields.pop("success_callbacks", None) or [],
            error_callbacks=error or fields.pop("error_callbacks", None) or [],
            **fields,
        )
    except ValidationError as exc:
        raise validation_error(exc) from exc
    check_new(sig)
    # members are signed only once the chain itself is known to be acceptable,
    # and removed again if storing it is refused: no orphans either way
    members, created = await _handover.member_keys(runtime, tasks)
    sig.tasks = members
    try:
        await runtime.store.create(
            sig, [*sig.success_callbacks, *sig.error_callbacks], members=members
        )
    except BaseException:
        await _handover.discard(runtime, created)
        raise
    return sig


async def swarm(
    runtime: MageflowRuntime,
    tasks: Any = None,
    success_callbacks: Any = None,
    error_callbacks: Any = None,
    config: SwarmConfig | None = None,
    is_swarm_closed: bool = False,
    name: str | None = None,
    **options: Any,
) -> SwarmSignature:
    fields, bound = split_options(options, _SWARM_OPTIONS)
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
        raise validation_error(exc) from exc
    check_new(sig)
    await runtime.store.create(sig, [*sig.success_callbacks, *sig.error_callbacks])
    if tasks:
        await swarm_add(runtime, sig, tasks, None)
    if is_swarm_closed:
        await swarm_close(runtime, sig.key)
        sig.is_swarm_closed = True
    return sig


async def swarm_add(
    runtime: MageflowRuntime, signature: Signature, tasks: Any, msgs: Sequence[Any] | None
) -> list[str]:
    """Admit tasks into a swarm; with ``msgs`` each gets its own message."""
    key = signature.key
    count = len(tasks) if isinstance(tasks, (list, tuple)) else 1
    if msgs is not None and len(msgs) != count:
        raise MageflowValidationError(
            f"msgs: expected one message per task ({count}), got {len(msgs)}",
            field="msgs",
        )
    messages = _admission.encode_messages(msgs) if msgs is not None else None
    admission = await _admission.plan(runtime, tasks, messages)
    store = runtime.store
    try:
        outbox = await _locks.waiting_for_lock(
            store.config,
            key,
            lambda: store.swarm_add(
                key,
                len(admission.keys),
                (admission.group_count, admission.groups),
                admission.members,
                token=_locks.token(key),
                dispatch_prefix=runtime.new_dispatch_id(),
            ),
        )
    except BaseException:
        # refused (closed, full, locked ...): the script stored nothing; only
        # unsaved flows stored ahead of it (see _admission) are removed again
        await _handover.discard(runtime, admission.created)
        raise
    await runtime.dispatch_outbox(outbox)
    return admission.keys


async def swarm_close(runtime: MageflowRuntime, key: str) -> None:
    store = runtime.store
    outbox = await _locks.waiting_for_lock(
        store.config,
        key,
        lambda: store.swarm_close(
            key, token=_locks.token(key), dispatch_prefix=runtime.new_dispatch_id()
        ),
    )
    await runtime.dispatch_outbox(outbox)
