"""Task signatures: a task name, bound kwargs and callbacks, as plain data.

A signature is persisted by ``mageflow`` under its ``key``. Everything in it
is JSON: ``model_validators`` is kept as an import path, never as a pickled
class, so whoever can write to the store cannot make a worker run code.
"""

from __future__ import annotations

import importlib
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticSerializationError, to_jsonable_python

from thirdmagic.backend import get_backend
from thirdmagic.errors import MageflowValidationError
from thirdmagic.message import resolve_return_field
from thirdmagic.outcome import ContainerProgress, ErrorDetails
from thirdmagic.status import (
    LifecycleEvent,
    PauseActionTypes,
    SignatureStatus,
    TaskStatus,
    pause_event,
)

__all__ = [
    "AnySignature",
    "ChainSignature",
    "Signature",
    "SignatureKwargs",
    "SwarmConfig",
    "SwarmSignature",
    "TaskSignature",
    "import_model",
    "model_import_path",
    "to_json_value",
]

_MAX_KEY_LENGTH = 200


def validation_error(exc: ValidationError) -> MageflowValidationError:
    """The MageflowValidationError a validator raised (pydantic wraps it), or one
    built from the first error, naming the field."""
    first = exc.errors()[0]
    original = (first.get("ctx") or {}).get("error")
    where = ".".join(str(p) for p in first["loc"])
    if isinstance(original, MageflowValidationError):
        if not where:
            return original
        # raised by a nested model (a signature inside a FlowSpec): name the full path
        inner = original.field or ""
        head = inner.split(".")[0]
        if inner and where.split(".")[-1] == head:
            # a field validator: pydantic's location already ends with the field
            field = where + inner[len(head) :]
        else:
            field = f"{where}.{inner}" if inner else where
        message = str(original)
        if inner and message.startswith(f"{inner}:"):
            message = message[len(inner) + 1 :].lstrip()
        return MageflowValidationError(f"{field}: {message}", field=field, key=original.key)
    loc = where or "<root>"
    return MageflowValidationError(f"{loc}: {first['msg']}", field=loc)


class _MageflowModel(BaseModel):
    """Construction raises MageflowValidationError naming the field, not a raw pydantic error."""

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise validation_error(exc) from exc


def new_key(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex}"


def to_json_value(value: Any, *, field: str) -> Any:
    """``value`` as plain JSON data, or a validation error naming ``field``."""
    try:
        plain = to_jsonable_python(value)
        json.dumps(plain, allow_nan=False)
    except (PydanticSerializationError, TypeError, ValueError) as exc:
        raise MageflowValidationError(
            f"{field}: value of type {type(value).__name__} is not JSON-serializable ({exc})",
            field=field,
        ) from exc
    return plain


def model_import_path(model: type[BaseModel]) -> str:
    """``module:QualName`` for a module-level model class."""
    qualname = model.__qualname__
    if "<locals>" in qualname:
        raise MageflowValidationError(
            f"model_validators: {qualname} is defined inside a function; it must be "
            "importable from module level because it is stored as an import path",
            field="model_validators",
        )
    return f"{model.__module__}:{qualname}"


def import_model(path: str) -> type[BaseModel]:
    """Resolve an import path written by :func:`model_import_path`."""
    module_name, _, qualname = path.partition(":")
    if not module_name or not qualname:
        raise MageflowValidationError(
            f"model_validators: {path!r} is not an import path of the form 'module:ClassName'",
            field="model_validators",
        )
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise MageflowValidationError(
            f"model_validators: cannot import {path!r}: {exc}", field="model_validators"
        ) from exc
    if not (isinstance(obj, type) and issubclass(obj, BaseModel)):
        raise MageflowValidationError(
            f"model_validators: {path!r} is not a pydantic model class", field="model_validators"
        )
    return obj


def _callback_keys(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    items: Iterable[Any] = [value] if isinstance(value, (str, Signature)) else value
    keys: list[str] = []
    for item in items:
        if isinstance(item, Signature):
            keys.append(item.key)
        elif isinstance(item, str) and item:
            keys.append(item)
        else:
            raise MageflowValidationError(
                f"{field}: expected signatures or signature keys, got {type(item).__name__}",
                field=field,
            )
    return keys


class SignatureKwargs(dict[str, Any]):
    """The bound kwargs of a stored signature; ``aupdate`` persists a partial update."""

    __slots__ = ("_key",)

    def __init__(self, data: dict[str, Any], key: str) -> None:
        super().__init__(data)
        self._key = key

    async def aupdate(self, values: dict[str, Any] | None = None, /, **more: Any) -> None:
        """Atomically merge ``values`` into the stored kwargs, then into this dict."""
        merged = {**(values or {}), **more}
        plain = {name: to_json_value(v, field=f"kwargs.{name}") for name, v in merged.items()}
        await get_backend().update_kwargs(self._key, plain)
        self.update(plain)


if TYPE_CHECKING:

    class _KwargsField:
        """How type checkers see ``Signature.kwargs``: set from any mapping, read as
        :class:`SignatureKwargs` (which is what the validator stores), so
        ``sig.kwargs.aupdate(...)`` type-checks. Never exists at run time."""

        def __get__(self, obj: object, owner: object) -> SignatureKwargs: ...

        def __set__(self, obj: object, value: Mapping[str, Any]) -> None: ...


class Signature(_MageflowModel):
    """Fields and lifecycle methods shared by tasks, chains and swarms."""

    model_config = ConfigDict(populate_by_name=True, validate_assignment=False)

    key: str = Field(
        default="",
        validation_alias=AliasChoices("key", "id"),
        description="Unique key of the signature in the store.",
    )
    task_name: str
    if TYPE_CHECKING:
        kwargs: _KwargsField = _KwargsField()
    else:
        kwargs: dict[str, Any] = Field(default_factory=dict)
    creation_time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    # Stored as an import path (JSON only, never a pickled class); the
    # ``model_validators`` property gives the class back.
    model_validators_path: str | type[BaseModel] | None = Field(
        default=None,
        alias="model_validators",
        description="Import path ('module:Class') of the task's input model.",
    )
    success_callbacks: list[str] = Field(default_factory=list)
    error_callbacks: list[str] = Field(default_factory=list)
    task_status: TaskStatus = Field(default_factory=TaskStatus)
    task_identifiers: dict[str, Any] = Field(default_factory=dict)
    missing_callbacks: list[str] = Field(
        default_factory=list,
        description=(
            "Callback keys that were no longer stored when this signature settled "
            "(deleted before it ran): they did not run. Written by the store."
        ),
    )
    error: ErrorDetails | None = Field(
        default=None,
        description="Why the signature failed (set by the store; read-only).",
    )

    _bound: bool = PrivateAttr(default=False)
    # Signature objects given for callbacks (and chain/swarm tasks): a signature
    # built with thirdmagic alone may refer to others that are not stored yet;
    # ``FlowSpec.of`` hands them over together.
    _attached: dict[str, Signature] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _remember_attached(cls, data: Any, handler: ModelWrapValidatorHandler[Signature]) -> Any:
        sig = handler(data)
        if isinstance(data, dict):
            found: dict[str, Signature] = {}
            for name in ("success_callbacks", "error_callbacks", "tasks"):
                value = data.get(name)
                items = [value] if isinstance(value, Signature) else value
                if isinstance(items, (list, tuple)):
                    found.update((v.key, v) for v in items if isinstance(v, Signature))
            sig._attached = found
        return sig

    @field_validator("key", mode="before")
    @classmethod
    def _check_key(cls, value: Any) -> Any:
        if value in (None, ""):
            return ""
        if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
            raise MageflowValidationError(
                f"key: expected a non-empty string without whitespace, got {value!r}", field="key"
            )
        if len(value) > _MAX_KEY_LENGTH:
            raise MageflowValidationError(
                f"key: at most {_MAX_KEY_LENGTH} characters, got {len(value)}", field="key"
            )
        return value

    @field_validator("task_name", mode="before")
    @classmethod
    def _check_task_name(cls, value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            raise MageflowValidationError(
                f"task_name: expected a non-empty string, got {value!r}", field="task_name"
            )
        return value

    @field_validator("model_validators_path", mode="before")
    @classmethod
    def _model_to_path(cls, value: Any) -> Any:
        if isinstance(value, type) and issubclass(value, BaseModel):
            resolve_return_field(value)  # two ReturnValue fields: fail now, naming both
            return model_import_path(value)
        if value is None or isinstance(value, str):
            return value
        raise MageflowValidationError(
            "model_validators: expected a pydantic model class or an import path, "
            f"got {type(value).__name__}",
            field="model_validators",
        )

    @field_validator("success_callbacks", mode="before")
    @classmethod
    def _success_keys(cls, value: Any) -> list[str]:
        return _callback_keys(value, "success_callbacks")

    @field_validator("error_callbacks", mode="before")
    @classmethod
    def _error_keys(cls, value: Any) -> list[str]:
        return _callback_keys(value, "error_callbacks")

    @field_validator("creation_time")
    @classmethod
    def _aware_utc(cls, value: datetime) -> datetime:
        # A naive datetime is what ``datetime.now()`` returns: it is read as the
        # local time of the process that builds the signature, then stored in UTC.
        return value.astimezone(UTC)

    @field_validator("kwargs", mode="before")
    @classmethod
    def _json_kwargs(cls, value: Any) -> Any:
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json")
        if not isinstance(value, dict):
            raise MageflowValidationError(
                f"kwargs: expected a mapping of names to values, got {type(value).__name__}",
                field="kwargs",
            )
        return {str(k): to_json_value(v, field=f"kwargs.{k}") for k, v in value.items()}

    @field_validator("task_identifiers", mode="before")
    @classmethod
    def _json_identifiers(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise MageflowValidationError(
                f"task_identifiers: expected a mapping, got {type(value).__name__}",
                field="task_identifiers",
            )
        return {str(k): to_json_value(v, field=f"task_identifiers.{k}") for k, v in value.items()}

    @model_validator(mode="after")
    def _finish(self) -> Signature:
        if not self.key:
            self.key = new_key(str(getattr(self, "kind", "task")))
        self.kwargs = SignatureKwargs(self.kwargs, self.key)
        return self

    def __eq__(self, other: object) -> bool:
        # the data only: attached signature objects are a building aid, not state
        if not isinstance(other, Signature) or type(self) is not type(other):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]

    # -- convenience ---------------------------------------------------------

    @property
    def id(self) -> str:
        """Alias of :attr:`key` kept for code written against the older API."""
        return self.key

    @property
    def status(self) -> SignatureStatus:
        return self.task_status.status

    @property
    def model_validators(self) -> type[BaseModel] | None:
        """The task's input model class, imported from :attr:`model_validators_path`.

        Raises ``MageflowValidationError`` (field ``model_validators``) when the
        stored path cannot be imported in this process.
        """
        path = self.model_validators_path
        if path is None or isinstance(path, type):
            return path
        return import_model(path)

    def validator_model(self) -> type[BaseModel] | None:
        return self.model_validators

    # -- persistence-backed operations --------------------------------------

    async def aio_run_no_wait(
        self, msg: BaseModel | dict[str, Any] | None = None, **options: Any
    ) -> None:
        """Dispatch a run of this signature with ``msg``; return without waiting.

        ``options`` are passed to the task manager (for Hatchet: additional
        metadata, priority ...).
        """
        await get_backend().run(self, msg, options)

    async def aio_result(self, timeout: float | None = None) -> Any:
        """Wait for the final result (a chain: its last step's; a swarm: the ordered list).

        Raises ``SignatureFailedError`` (``SignatureCanceledError`` when
        canceled) with the stored error details, or ``ResultTimeoutError``.
        """
        return await get_backend().result(self.key, timeout)

    async def aio_run(
        self,
        msg: BaseModel | dict[str, Any] | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> Any:
        """Run this signature with ``msg`` and wait for its result (see ``aio_result``)."""
        await self.aio_run_no_wait(msg, **options)
        return await self.aio_result(timeout)

    async def cancel(self, *, error_callbacks: bool = False) -> None:
        """Cancel for good: runs are cancelled in the engine, containers cascade.

        With ``error_callbacks=True`` the error callbacks fire once, with error
        details of type ``Canceled``.
        """
        self.task_status = await get_backend().cancel(self.key, error_callbacks=error_callbacks)

    async def retry(self) -> None:
        """Run a failed or canceled signature again with the input it last received."""
        self.task_status = await get_backend().retry(self.key)
        self.error = None

    async def clone(self, **changes: Any) -> Self:
        """A new stored signature of the same kind, task, kwargs and callbacks (new key).

        ``changes`` override fields of the copy (``kwargs``, ``task_identifiers`` ...).
        """
        copy = await get_backend().clone(self, changes)
        if not isinstance(copy, type(self)):
            raise TypeError(f"clone of a {type(self).__name__} gave a {type(copy).__name__}")
        return copy

    async def add_callbacks(
        self,
        success: Iterable[Signature | str] | None = None,
        errors: Iterable[Signature | str] | None = None,
    ) -> None:
        ok = _callback_keys(list(success or []), "success")
        err = _callback_keys(list(errors or []), "errors")
        await get_backend().add_callbacks(self, ok, err)
        self.success_callbacks.extend(k for k in ok if k not in self.success_callbacks)
        self.error_callbacks.extend(k for k in err if k not in self.error_callbacks)

    async def remove(self, with_error: bool = True, with_success: bool = True) -> None:
        """Delete this signature, and its callbacks (recursively) unless told not to."""
        await get_backend().remove(self.key, with_error=with_error, with_success=with_success)

    @classmethod
    async def delete_signature(cls, key: str) -> None:
        """Delete the signature stored under ``key`` (its callbacks are left alone)."""
        await get_backend().remove(key, with_error=False, with_success=False)

    async def _apply(self, event: LifecycleEvent) -> None:
        self.task_status = await get_backend().apply(self.key, event)

    async def suspend(self) -> None:
        await self._apply(LifecycleEvent.SUSPEND)

    async def resume(self) -> None:
        await self._apply(LifecycleEvent.RESUME)

    async def interrupt(self) -> None:
        await self._apply(LifecycleEvent.INTERRUPT)

    async def pause_task(self, pause_type: PauseActionTypes = PauseActionTypes.SUSPEND) -> None:
        event = pause_event(pause_type)
        await self._apply(event)


class TaskSignature(Signature):
    """A signature of one task."""

    kind: Literal["task"] = "task"

    if TYPE_CHECKING:
        # What the constructor accepts (the validators turn signature objects
        # into keys and a model class into its import path); the fields hold
        # the stored form.
        def __init__(
            self,
            *,
            task_name: str,
            key: str = ...,
            kwargs: Mapping[str, Any] | BaseModel = ...,
            creation_time: datetime = ...,
            model_validators: type[BaseModel] | str | None = ...,
            success_callbacks: Sequence[Signature | str] = ...,
            error_callbacks: Sequence[Signature | str] = ...,
            task_status: TaskStatus = ...,
            task_identifiers: Mapping[str, Any] = ...,
        ) -> None: ...


class ChainSignature(Signature):
    """Tasks that run one after another, each receiving the previous one's result.

    ``tasks`` holds the member signature keys in order; it never changes after
    creation, so a step's completion only moves a cursor in the store.
    """

    kind: Literal["chain"] = "chain"
    task_name: str = "mageflow.chain"
    tasks: list[str] = Field(default_factory=list)

    if TYPE_CHECKING:

        def __init__(
            self,
            *,
            tasks: Sequence[Signature | str] = ...,
            task_name: str = ...,
            key: str = ...,
            kwargs: Mapping[str, Any] | BaseModel = ...,
            creation_time: datetime = ...,
            model_validators: type[BaseModel] | str | None = ...,
            success_callbacks: Sequence[Signature | str] = ...,
            error_callbacks: Sequence[Signature | str] = ...,
            task_status: TaskStatus = ...,
            task_identifiers: Mapping[str, Any] = ...,
        ) -> None: ...

    @field_validator("tasks", mode="before")
    @classmethod
    def _task_keys(cls, value: Any) -> list[str]:
        return _callback_keys(value, "tasks")

    async def progress(self) -> ContainerProgress:
        """Steps admitted, queued, running, done and failed, and the current step."""
        return await get_backend().progress(self.key)


class SwarmConfig(_MageflowModel):
    """Limits of a swarm."""

    model_config = ConfigDict(frozen=True)

    max_concurrency: int = Field(default=30, ge=1)
    stop_after_n_failures: int | None = Field(default=None, ge=1)
    max_task_allowed: int | None = Field(default=None, ge=1)
    prefetch: int = Field(default=0, ge=0)
    """Members sent to the engine ahead of free places, beyond ``max_concurrency``
    (0, the default: the next member is sent when a place frees). With workers
    whose slots for the task about match ``max_concurrency`` and short members,
    a slot that frees then finds the next member already queued in the engine
    instead of waiting for its trigger. At most ``max_concurrency`` bodies run
    at once either way: a run that starts while every place is taken waits for
    one (docs/containers.md, "Sending members ahead")."""


class SwarmSignature(Signature):
    """Tasks that run in parallel under a concurrency cap and accept members while running.

    Members are not listed in this model: the store keeps them in an
    append-only list beside the signature so that a member's completion is
    O(1) no matter how many members the swarm has.
    """

    kind: Literal["swarm"] = "swarm"
    task_name: str = "mageflow.swarm"
    config: SwarmConfig = Field(default_factory=SwarmConfig)
    is_swarm_closed: bool = False
    tasks: list[str] = Field(
        default_factory=list,
        exclude=True,
        description=(
            "Members to admit when an unsaved swarm is handed over (FlowSpec / "
            "mageflow.submit). A stored swarm keeps its members beside it in the store, "
            "not here."
        ),
    )

    if TYPE_CHECKING:

        def __init__(
            self,
            *,
            tasks: Sequence[Signature | str] = ...,
            config: SwarmConfig = ...,
            is_swarm_closed: bool = ...,
            task_name: str = ...,
            key: str = ...,
            kwargs: Mapping[str, Any] | BaseModel = ...,
            creation_time: datetime = ...,
            model_validators: type[BaseModel] | str | None = ...,
            success_callbacks: Sequence[Signature | str] = ...,
            error_callbacks: Sequence[Signature | str] = ...,
            task_status: TaskStatus = ...,
            task_identifiers: Mapping[str, Any] = ...,
        ) -> None: ...

    @field_validator("tasks", mode="before")
    @classmethod
    def _member_keys(cls, value: Any) -> list[str]:
        return _callback_keys(value, "tasks")

    async def aio_run_in_swarm(
        self, task_or_tasks: Any, msg: BaseModel | dict[str, Any] | None = None
    ) -> list[str]:
        """Add one task or several to this swarm, each receiving ``msg``.

        Returns the member keys. They start as soon as the swarm runs and a
        slot under ``max_concurrency`` is free.
        """
        tasks = task_or_tasks if isinstance(task_or_tasks, (list, tuple)) else [task_or_tasks]
        msgs = [msg] * len(tasks) if msg is not None else None
        return await get_backend().swarm_add(self, list(tasks), msgs)

    async def aio_run_tasks_in_swarm(
        self, tasks: Sequence[Any], msgs: Sequence[BaseModel | dict[str, Any]]
    ) -> list[str]:
        """Add several tasks to this swarm, each with its own message."""
        return await get_backend().swarm_add(self, list(tasks), list(msgs))

    async def progress(self) -> ContainerProgress:
        """Members admitted, queued, running, done and failed."""
        return await get_backend().progress(self.key)

    async def close_swarm(self) -> None:
        """Accept no more tasks; the swarm completes once its members finish."""
        await get_backend().swarm_close(self.key)
        self.is_swarm_closed = True


AnySignature = Annotated[
    TaskSignature | ChainSignature | SwarmSignature, Field(discriminator="kind")
]
