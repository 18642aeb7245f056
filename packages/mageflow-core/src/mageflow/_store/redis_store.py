"""Signature persistence on plain Redis >= 7 / valkey.

Every public method is one network round trip (a Lua script or a single
command), and every state change is one atomic script, so a crash can never
leave half a transition behind. Redis errors are mapped to ``StoreError`` here,
at the seam.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

import redis.asyncio as aioredis
from pydantic import TypeAdapter, ValidationError
from redis import exceptions as redis_exc
from redis.commands.core import AsyncScript
from thirdmagic.errors import (
    InvalidTransitionError,
    MageflowValidationError,
    SignatureNotFoundError,
    StoreError,
    SwarmClosedError,
    SwarmFullError,
)
from thirdmagic.signature import AnySignature, ChainSignature, Signature, SwarmSignature
from thirdmagic.status import LifecycleEvent, SignatureStatus, TaskStatus

from mageflow._store import schema as S
from mageflow.config import MageflowConfig

__all__ = [
    "BeginResult",
    "LockedSignal",
    "OutboxEntry",
    "RedisStore",
    "TransitionResult",
]

_T = TypeVar("_T")
_signature_adapter: TypeAdapter[Signature] = TypeAdapter(AnySignature)


class LockedSignal(Exception):
    """Internal: the script refused because another holder has the lock."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(key)


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A dispatch claimed atomically by a script: everything needed to send it.

    ``mode`` says how ``value`` reaches the signature: ``inject`` writes it
    into the return-value field, ``merge`` uses it as the message.
    ``inherited`` are kwargs of the containers around the signature.
    """

    key: str
    dispatch_id: str
    task_name: str
    model_path: str | None
    kwargs: dict[str, Any]
    kind: str = "task"
    mode: str = "merge"
    value: Any = None
    inherited: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BeginResult:
    decision: Literal["run", "skip", "park", "drain"]
    reason: str = ""
    signature: Signature | None = None
    outcome: str = ""
    outbox: list[OutboxEntry] = field(default_factory=list)
    payload: Any = None


@dataclass(frozen=True, slots=True)
class TransitionResult:
    status: SignatureStatus
    previous: SignatureStatus | None
    changed: bool
    run_id: str | None = None
    replay_input: dict[str, Any] | None = None
    dispatch_id: str | None = None
    kind: str = "task"
    task_name: str = ""


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def _jdump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


class RedisStore:
    """Reads and writes signatures under one key prefix."""

    def __init__(self, client: aioredis.Redis, config: MageflowConfig | None = None) -> None:
        self.client = client
        self.config = config or MageflowConfig()
        self.keys = S.Keys(self.config.key_prefix)
        self._active_ms = S.ms(self.config.active_ttl)
        self._done_ms = S.ms(self.config.done_ttl)
        reg = client.register_script
        self._create = reg(S.CREATE)
        self._dispatch = reg(S.DISPATCH)
        self._begin = reg(S.BEGIN)
        self._finish = reg(S.FINISH)
        self._transition = reg(S.TRANSITION)
        self._update_kwargs = reg(S.UPDATE_KWARGS)
        self._add_callbacks = reg(S.ADD_CALLBACKS)
        self._remove = reg(S.REMOVE)
        self._lock = reg(S.LOCK)
        self._unlock = reg(S.UNLOCK)
        self._renew_lock = reg(S.RENEW_LOCK)
        self._advance = reg(S.ADVANCE)
        self._swarm_add = reg(S.SWARM_ADD)
        self._swarm_close = reg(S.SWARM_CLOSE)
        self._recover = reg(S.RECOVER)

    async def prepare(self) -> None:
        """Load every script into the server so later calls are one EVALSHA each."""
        scripts = (
            self._create,
            self._dispatch,
            self._begin,
            self._finish,
            self._transition,
            self._update_kwargs,
            self._add_callbacks,
            self._remove,
            self._lock,
            self._unlock,
            self._renew_lock,
            self._advance,
            self._swarm_add,
            self._swarm_close,
            self._recover,
        )
        await self._guard(lambda: self._load_scripts(scripts), key=None)

    async def _load_scripts(self, scripts: Sequence[AsyncScript]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for script in scripts:
            pipe.script_load(script.script)
        shas = await pipe.execute()
        for script, sha in zip(scripts, shas, strict=True):
            script.sha = _text(sha)

    # -- plumbing -----------------------------------------------------------

    async def _guard(self, call: Callable[[], Awaitable[_T]], key: str | None) -> _T:
        what = f"signature {key!r}" if key else "the signature store"
        try:
            return await call()
        except redis_exc.ResponseError as exc:
            if "WRONGTYPE" in str(exc):
                raise StoreError(
                    f"key {key!r} holds data that is not a MageFlow signature", key=key
                ) from exc
            raise StoreError(f"redis rejected an operation on {what}: {exc}", key=key) from exc
        except (redis_exc.ConnectionError, redis_exc.TimeoutError, OSError) as exc:
            raise StoreError(
                f"redis is unreachable ({type(exc).__name__}: {exc}) during an operation on "
                f"{what}; the operation is atomic: it was applied completely or not at all",
                key=key,
            ) from exc
        except redis_exc.RedisError as exc:
            raise StoreError(f"redis error on {what}: {exc}", key=key) from exc

    async def _run(
        self, script: AsyncScript, key: str, keys: list[str], args: list[Any]
    ) -> list[Any]:
        raw = await self._guard(lambda: script(keys=keys, args=args), key=key)
        reply = cast(list[Any], raw)
        code = _text(reply[0])
        if code == "corrupt":
            culprit = _text(reply[1]) if len(reply) > 1 else key
            raise StoreError(
                f"key {culprit!r} holds data that is not a MageFlow signature "
                "(foreign or corrupted); it was left untouched",
                key=key,
            )
        if code == "locked":
            raise LockedSignal(key)
        return [code, *reply[1:]]

    def _missing(self, key: str) -> SignatureNotFoundError:
        return SignatureNotFoundError(key)

    # -- encoding -----------------------------------------------------------

    def encode(self, sig: Signature) -> list[str]:
        data = sig.model_dump(mode="json")
        pairs: list[str] = [
            S.F_VERSION,
            S.SCHEMA_VERSION,
            S.F_KIND,
            data["kind"],
            S.F_TASK,
            data["task_name"],
            S.F_CREATED,
            data["creation_time"],
            S.F_STATUS,
            data["task_status"]["status"],
            S.F_CALLBACKS_OK,
            _jdump(data["success_callbacks"]),
            S.F_CALLBACKS_ERR,
            _jdump(data["error_callbacks"]),
        ]
        if data["task_status"]["last_status"]:
            pairs += [S.F_LAST_STATUS, data["task_status"]["last_status"]]
        if data["model_validators_path"]:
            pairs += [S.F_MODEL, data["model_validators_path"]]
        if data["task_identifiers"]:
            pairs += [S.F_IDENT, _jdump(data["task_identifiers"])]
        for name, value in data["kwargs"].items():
            pairs += [S.KWARG_PREFIX + name, _jdump(value)]
        common = {
            "key",
            "kind",
            "task_name",
            "creation_time",
            "task_status",
            "success_callbacks",
            "error_callbacks",
            "model_validators_path",
            "task_identifiers",
            "kwargs",
        }
        for name, value in data.items():
            if name not in common:
                pairs += [S.XFIELD_PREFIX + name, _jdump(value)]
        return pairs

    def decode(self, key: str, raw: Sequence[Any] | dict[Any, Any]) -> Signature:
        if isinstance(raw, dict):
            flat = {_text(k): _text(v) for k, v in raw.items()}
        else:
            items = [_text(x) for x in raw]
            flat = dict(zip(items[::2], items[1::2], strict=True))
        if flat.get(S.F_VERSION) != S.SCHEMA_VERSION:
            raise StoreError(
                f"key {self.keys.sig(key)!r} holds data that is not a MageFlow signature", key=key
            )
        try:
            data: dict[str, Any] = {
                "key": key,
                "kind": flat.get(S.F_KIND, "task"),
                "task_name": flat[S.F_TASK],
                "creation_time": flat[S.F_CREATED],
                "model_validators": flat.get(S.F_MODEL),
                "success_callbacks": json.loads(flat.get(S.F_CALLBACKS_OK, "[]")) or [],
                "error_callbacks": json.loads(flat.get(S.F_CALLBACKS_ERR, "[]")) or [],
                "task_identifiers": json.loads(flat.get(S.F_IDENT, "{}")),
                "task_status": {
                    "status": flat.get(S.F_STATUS, "pending"),
                    "last_status": flat.get(S.F_LAST_STATUS) or None,
                },
                "kwargs": {
                    name[len(S.KWARG_PREFIX) :]: json.loads(value)
                    for name, value in flat.items()
                    if name.startswith(S.KWARG_PREFIX)
                },
            }
            for name, value in flat.items():
                if name.startswith(S.XFIELD_PREFIX):
                    data[name[len(S.XFIELD_PREFIX) :]] = json.loads(value)
            return _signature_adapter.validate_python(data)
        except (KeyError, ValueError, ValidationError, MageflowValidationError) as exc:
            raise StoreError(
                f"signature {key!r} is stored in a form MageFlow cannot read: {exc}", key=key
            ) from exc

    # -- operations ---------------------------------------------------------

    async def create(
        self, sig: Signature, required: Sequence[str] = (), members: Sequence[str] = ()
    ) -> None:
        """Store a new signature; every key in ``required`` and ``members`` must exist.

        ``members`` (chain steps) are linked to the new signature in the same step.
        """
        keys = [
            self.keys.sig(sig.key),
            *(self.keys.sig(k) for k in members),
            *(self.keys.sig(k) for k in required),
        ]
        reply = await self._run(
            self._create,
            sig.key,
            keys,
            [self._active_ms, len(members), sig.key, *self.encode(sig)],
        )
        if reply[0] == "exists":
            raise MageflowValidationError(
                f"key: a signature is already stored under {sig.key!r}", field="key", key=sig.key
            )
        if reply[0] == "missing":
            missing = _text(reply[1])[len(self.keys.sig_prefix) :]
            raise SignatureNotFoundError(
                missing, f"signature {sig.key!r} refers to {missing!r}, which is not stored"
            )
        if reply[0] == "taken":
            taken = _text(reply[1])[len(self.keys.sig_prefix) :]
            raise MageflowValidationError(
                f"tasks: signature {taken!r} is listed twice or already belongs to a chain "
                "or swarm",
                field="tasks",
                key=taken,
            )

    async def load(self, key: str) -> Signature | None:
        raw = await self._guard(lambda: self.client.hgetall(self.keys.sig(key)), key=key)
        if not raw:
            return None
        return self.decode(key, cast(dict[Any, Any], raw))

    async def load_many(self, keys: Sequence[str]) -> list[Signature | None]:
        async def call() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(self.keys.sig(key))
            return await pipe.execute()

        raws = await self._guard(call, key=None)
        return [self.decode(k, r) if r else None for k, r in zip(keys, raws, strict=True)]

    async def dispatch(
        self, key: str, input_data: dict[str, Any], dispatch_id: str, token: str
    ) -> Literal["dispatch", "parked"]:
        reply = await self._run(
            self._dispatch,
            key,
            [self.keys.sig(key), self.keys.lock(key), self.keys.pending],
            [token, _jdump(input_data), dispatch_id, self._active_ms, key],
        )
        if reply[0] == "missing":
            raise self._missing(key)
        if reply[0] == "member":
            raise InvalidTransitionError(
                key,
                "member",
                "run",
                f"signature {key!r} is a member of {_text(reply[1])!r}; it runs when its "
                "chain or swarm starts it, not on its own",
            )
        if reply[0] == "invalid":
            raise InvalidTransitionError(
                key,
                _text(reply[1]),
                "run",
                f"signature {key!r} cannot be run: its status is {_text(reply[1])!r} "
                "(only pending or suspended signatures accept a run)",
            )
        return cast(Literal["dispatch", "parked"], reply[0])

    async def begin(
        self, key: str, dispatch_id: str, run_id: str, input_data: dict[str, Any]
    ) -> BeginResult:
        reply = await self._run(
            self._begin,
            key,
            [self.keys.sig(key), self.keys.lock(key), self.keys.pending],
            [dispatch_id, run_id, _jdump(input_data), self._active_ms],
        )
        code = reply[0]
        if code == "run":
            return BeginResult("run", signature=self.decode(key, reply[1]))
        if code == "drain":
            return BeginResult(
                "drain",
                outcome=_text(reply[1]),
                outbox=self._outbox(_text(reply[2])),
            )
        if code == "park":
            return BeginResult("park")
        return BeginResult("skip", reason=_text(reply[1]) if len(reply) > 1 else "")

    def _outbox(self, raw: str) -> list[OutboxEntry]:
        items = json.loads(raw)
        if not isinstance(items, list):  # cjson writes an empty array as {}
            return []

        def plain(mapping: Any) -> dict[str, Any]:
            if not isinstance(mapping, dict):
                return {}
            return {k: json.loads(v) for k, v in mapping.items()}

        return [
            OutboxEntry(
                key=item["key"],
                dispatch_id=item["did"],
                task_name=item.get("t", ""),
                model_path=item.get("mv"),
                kwargs=plain(item.get("kw")),
                kind=item.get("kind") or "task",
                mode=item.get("mode") or "merge",
                value=json.loads(item["v"]) if isinstance(item.get("v"), str) else None,
                inherited=plain(item.get("pkw")),
            )
            for item in items
        ]

    async def finish(
        self, key: str, *, succeeded: bool, run_id: str, payload: Any
    ) -> tuple[str, list[OutboxEntry]]:
        """Record the final outcome; returns (code, claimed callbacks).

        code is ``ok`` (this call recorded it), ``already`` (a repeat; the outbox
        is returned again so a lost dispatch can be redone), or ``missing``,
        ``stale``, ``invalid`` (nothing recorded, nothing to dispatch).
        """
        reply = await self._run(
            self._finish,
            key,
            [self.keys.sig(key), self.keys.lock(key)],
            [*self._header(run_id), "succeed" if succeeded else "fail", _jdump(payload)],
        )
        code = reply[0]
        if code in ("ok", "already"):
            return code, self._outbox(_text(reply[1]))
        return code, []

    async def transition(
        self, key: str, event: LifecycleEvent, token: str, new_dispatch_id: str
    ) -> TransitionResult:
        reply = await self._run(
            self._transition,
            key,
            [self.keys.sig(key), self.keys.lock(key), self.keys.pending],
            [event.value, token, self._active_ms, self._done_ms, new_dispatch_id, key],
        )
        code = reply[0]
        if code == "missing":
            raise self._missing(key)
        if code == "invalid":
            raise InvalidTransitionError(key, _text(reply[1]), event.value)
        kind, task_name = _text(reply[-2]), _text(reply[-1])
        if code == "noop":
            last = _text(reply[2])
            return TransitionResult(
                SignatureStatus(_text(reply[1])),
                SignatureStatus(last) if last else None,
                changed=False,
                run_id=_text(reply[3]) or None,
                kind=kind,
                task_name=task_name,
            )
        if code == "replay":
            return TransitionResult(
                SignatureStatus(_text(reply[1])),
                SignatureStatus(_text(reply[2])),
                changed=True,
                replay_input=json.loads(_text(reply[3])),
                dispatch_id=_text(reply[4]),
                kind=kind,
                task_name=task_name,
            )
        return TransitionResult(
            SignatureStatus(_text(reply[1])),
            SignatureStatus(_text(reply[2])),
            changed=True,
            run_id=_text(reply[3]) or None,
            kind=kind,
            task_name=task_name,
        )

    async def update_kwargs(self, key: str, values: dict[str, Any], token: str) -> None:
        if not values:
            return
        args: list[Any] = [token, self._active_ms]
        for name, value in values.items():
            args += [S.KWARG_PREFIX + name, _jdump(value)]
        reply = await self._run(
            self._update_kwargs, key, [self.keys.sig(key), self.keys.lock(key)], args
        )
        if reply[0] == "missing":
            raise self._missing(key)
        if reply[0] == "invalid":
            raise InvalidTransitionError(
                key,
                _text(reply[1]),
                "update kwargs",
                f"signature {key!r} is {_text(reply[1])}; its kwargs can no longer change",
            )

    async def add_callbacks(
        self, key: str, success: Sequence[str], errors: Sequence[str], token: str
    ) -> None:
        cb_keys = [self.keys.sig(k) for k in (*success, *errors)]
        reply = await self._run(
            self._add_callbacks,
            key,
            [self.keys.sig(key), self.keys.lock(key), *cb_keys],
            [token, self._active_ms, len(success), *success, *errors],
        )
        if reply[0] == "missing":
            if len(reply) > 1:
                missing = _text(reply[1])[len(self.keys.sig_prefix) :]
                raise SignatureNotFoundError(
                    missing, f"callback {missing!r} of signature {key!r} is not stored"
                )
            raise self._missing(key)
        if reply[0] == "invalid":
            raise InvalidTransitionError(
                key,
                _text(reply[1]),
                "add callbacks",
                f"signature {key!r} is {_text(reply[1])}; callbacks added now would never fire",
            )

    async def remove(
        self,
        key: str,
        *,
        with_error: bool,
        with_success: bool,
        token: str,
        held: dict[str, str] | None = None,
    ) -> int:
        """Delete ``key`` and, recursively, its members and the chosen callbacks.

        ``held`` maps keys to the caller's lock tokens (``token`` is the root's).
        """
        tokens = {**(held or {}), key: token} if token else dict(held or {})
        reply = await self._run(
            self._remove,
            key,
            [self.keys.sig(key)],
            [
                _jdump(tokens) if tokens else "{}",
                int(with_error),
                int(with_success),
                self.keys.sig_prefix,
                f"{self.keys.prefix}lock:",
                self.keys.swarm_prefix,
            ],
        )
        if reply[0] == "member":
            raise InvalidTransitionError(
                _text(reply[1]),
                "member",
                "remove",
                f"signature {_text(reply[1])!r} belongs to {_text(reply[2])!r}, which is still "
                "running; remove the chain or swarm, or wait until it finishes",
            )
        return int(reply[1])

    # -- containers -----------------------------------------------------------

    def _header(self, dispatch_prefix: str) -> list[Any]:
        return [
            self.keys.sig_prefix,
            self.keys.swarm_prefix,
            self._active_ms,
            self._done_ms,
            dispatch_prefix,
        ]

    async def advance(
        self,
        key: str,
        *,
        token: str,
        action: Literal["start", "kick"],
        dispatch_id: str = "",
        mode: str = "merge",
        value: Any = None,
        inherited: dict[str, Any] | None = None,
        dispatch_prefix: str,
    ) -> tuple[str, list[OutboxEntry]]:
        """Start a chain or swarm, or continue one after resume; returns what to dispatch."""
        pkw = {k: _jdump(v) for k, v in (inherited or {}).items()}
        reply = await self._run(
            self._advance,
            key,
            [self.keys.sig(key), self.keys.lock(key)],
            [
                *self._header(dispatch_prefix),
                token,
                action,
                dispatch_id,
                mode,
                _jdump(value if value is not None else {}),
                _jdump(pkw),
            ],
        )
        if reply[0] == "missing":
            raise self._missing(key)
        if reply[0] == "ok":
            return "ok", self._outbox(_text(reply[1]))
        return _text(reply[0]), []

    async def swarm_add(
        self,
        key: str,
        members: Sequence[tuple[str, dict[str, Any] | None]],
        *,
        token: str,
        dispatch_prefix: str,
    ) -> list[OutboxEntry]:
        args: list[Any] = [*self._header(dispatch_prefix), token, len(members)]
        for member, msg in members:
            args += [member, "" if msg is None else _jdump(msg)]
        reply = await self._run(
            self._swarm_add, key, [self.keys.sig(key), self.keys.lock(key)], args
        )
        code = reply[0]
        if code == "missing":
            if len(reply) > 1:
                raise SignatureNotFoundError(
                    _text(reply[1]), f"swarm member {_text(reply[1])!r} is not stored"
                )
            raise self._missing(key)
        if code == "notswarm":
            raise MageflowValidationError(f"signature {key!r} is not a swarm", key=key)
        if code == "closed":
            raise SwarmClosedError(
                key,
                _text(reply[1]),
                "add tasks",
                f"swarm {key!r} is closed (status {_text(reply[1])!r}); it accepts no more tasks",
            )
        if code == "full":
            raise SwarmFullError(
                f"swarm {key!r} holds {_text(reply[1])} tasks; adding {len(members)} would "
                f"exceed max_task_allowed={_text(reply[2])}",
                field="max_task_allowed",
                key=key,
            )
        if code == "taken":
            raise MageflowValidationError(
                f"tasks: signature {_text(reply[1])!r} is listed twice or already belongs to "
                "a chain or swarm",
                field="tasks",
                key=_text(reply[1]),
            )
        return self._outbox(_text(reply[1]))

    async def swarm_close(self, key: str, *, token: str, dispatch_prefix: str) -> list[OutboxEntry]:
        reply = await self._run(
            self._swarm_close,
            key,
            [self.keys.sig(key), self.keys.lock(key)],
            [*self._header(dispatch_prefix), token],
        )
        if reply[0] == "missing":
            raise self._missing(key)
        if reply[0] == "notswarm":
            raise MageflowValidationError(f"signature {key!r} is not a swarm", key=key)
        return self._outbox(_text(reply[1]))

    async def due_dispatches(self, older_than_ms: int, limit: int) -> list[OutboxEntry]:
        """Claimed dispatches whose run has not arrived for ``older_than_ms``."""
        raw = await self._guard(
            lambda: self._recover(keys=[self.keys.pending], args=[older_than_ms, limit]),
            key=None,
        )
        items = [_text(x) for x in cast(list[Any], raw)]
        return self._outbox("[" + ",".join(items) + "]") if items else []

    async def members(self, sig: Signature) -> list[str]:
        """Member keys of a chain or swarm (empty for a task)."""
        if isinstance(sig, ChainSignature):
            return list(sig.tasks)
        if isinstance(sig, SwarmSignature):
            raw = await self._guard(
                lambda: self.client.lrange(self.keys.swarm_members(sig.key), 0, -1), key=sig.key
            )
            return [_text(x) for x in cast(list[Any], raw)]
        return []

    async def swarm_counters(self, key: str) -> dict[str, int]:
        raw = await self._guard(
            lambda: self.client.hmget(self.keys.sig(key), ["n", "run", "ok", "bad"]), key=key
        )
        values = cast(list[Any], raw)
        return {
            name: int(_text(v)) if v is not None else 0
            for name, v in zip(("admitted", "running", "succeeded", "failed"), values, strict=True)
        }

    async def acquire_lock(self, key: str, token: str) -> bool:
        reply = await self._run(
            self._lock,
            key,
            [self.keys.sig(key), self.keys.lock(key)],
            [token, S.ms(self.config.lock_ttl)],
        )
        if reply[0] == "missing":
            raise self._missing(key)
        return bool(reply[0] == "ok")

    async def lock_and_load(self, key: str, token: str) -> Signature | None:
        """Take the lock and read the signature in one step; None if someone else holds it."""
        reply = await self._run(
            self._lock,
            key,
            [self.keys.sig(key), self.keys.lock(key)],
            [token, S.ms(self.config.lock_ttl)],
        )
        if reply[0] == "missing":
            raise self._missing(key)
        if reply[0] != "ok":
            return None
        try:
            return self.decode(key, reply[1])
        except StoreError:
            await self.release_lock(key, token)
            raise

    async def release_lock(self, key: str, token: str) -> None:
        await self._guard(lambda: self._unlock(keys=[self.keys.lock(key)], args=[token]), key=key)

    async def renew_lock(self, key: str, token: str) -> bool:
        """Push the lock's expiry to ``lock_ttl`` from now; False if this holder lost it."""
        ms = S.ms(self.config.lock_ttl)
        reply = await self._guard(
            lambda: self._renew_lock(keys=[self.keys.lock(key)], args=[token, ms]), key=key
        )
        return bool(reply)

    async def status(self, key: str) -> TaskStatus | None:
        raw = await self._guard(
            lambda: self.client.hmget(self.keys.sig(key), [S.F_STATUS, S.F_LAST_STATUS]), key=key
        )
        values = cast(list[Any], raw)
        if values[0] is None:
            return None
        last = _text(values[1]) if values[1] is not None else None
        return TaskStatus(
            status=SignatureStatus(_text(values[0])),
            last_status=SignatureStatus(last) if last else None,
        )
