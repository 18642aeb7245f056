"""What crosses the wire between the store and its scripts, in both directions.

* a signature <-> its hash fields (:func:`encode_signature`,
  :func:`decode_signature`);
* dispatch entries (the outbox a script claims, and the pending index): the
  JSON object names in :class:`E`, how the value reaches the signature in
  :class:`MODE`, parsed by :func:`parse_outbox`;
* the words a script replies with, :class:`R`, and the one table turning an
  error reply into an exception (:func:`error_for`).

The Lua scripts get every name here in their generated header (``E.key``,
``R.missing``...), so neither side spells them by hand.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import TypeAdapter, ValidationError
from thirdmagic.errors import (
    InvalidTransitionError,
    MageflowValidationError,
    SignatureNotFoundError,
    StoreError,
    SwarmClosedError,
    SwarmFullError,
)
from thirdmagic.outcome import ErrorDetails
from thirdmagic.signature import AnySignature, Signature

from mageflow._store.keys import KWARG_PREFIX, SCHEMA_VERSION, XFIELD_PREFIX, F
from mageflow.engine import REFERENCE_TAG

__all__ = [
    "ERRORS",
    "KIND",
    "MODE",
    "REF",
    "E",
    "LockedSignal",
    "OutboxEntry",
    "R",
    "decode_signature",
    "encode_signature",
    "error_for",
    "jdump",
    "parse_outbox",
    "text",
]

_signature_adapter: TypeAdapter[Signature] = TypeAdapter(AnySignature)


class E:
    """Field names of a dispatch entry (JSON object)."""

    key: Final = "key"
    dispatch: Final = "did"
    task: Final = "t"
    model: Final = "mv"
    kind: Final = "kind"
    kwargs: Final = "kw"
    inherited: Final = "pkw"
    mode: Final = "mode"
    value: Final = "v"
    error: Final = "er"
    """error details (JSON) handed to an error callback"""


class MODE:
    """How an entry's value reaches the signature."""

    merge: Final = "merge"
    """the value is the run's message"""
    inject: Final = "inject"
    """the value goes into the signature's return-value field"""


class REF:
    """A payload reference: ``{tag: {kind: blob|swarm, key: <signature key>, ...}}``.

    One reserved key holding an object, so the kwargs merged beside a
    whole-input reference can have any name. ``blob``: one JSON value in the
    signature's ``blob:`` hash, field ``f``. ``swarm``: the ordered result list
    of swarm ``key``, ``n`` members, read from its results hash in chunks on
    the worker.
    """

    tag: Final = REFERENCE_TAG
    kind: Final = "kind"
    blob: Final = "blob"
    swarm: Final = "swarm"
    key: Final = "key"
    field: Final = "f"
    count: Final = "n"


class KIND:
    """Signature kinds as stored in ``F.kind``."""

    task: Final = "task"
    chain: Final = "chain"
    swarm: Final = "swarm"


class R:
    """Reply words: the first element of every script reply, and skip reasons."""

    ok: Final = "ok"
    # errors (see error_for)
    missing: Final = "missing"
    corrupt: Final = "corrupt"
    locked: Final = "locked"
    exists: Final = "exists"
    taken: Final = "taken"
    member: Final = "member"
    invalid: Final = "invalid"
    notswarm: Final = "notswarm"
    closed: Final = "closed"
    full: Final = "full"
    # results of one script or another (each script lists its own in REPLIES)
    dispatch: Final = "dispatch"
    parked: Final = "parked"
    run: Final = "run"
    skip: Final = "skip"
    park: Final = "park"
    drain: Final = "drain"
    already: Final = "already"
    stale: Final = "stale"
    noop: Final = "noop"
    replay: Final = "replay"
    busy: Final = "busy"
    retry: Final = "retry"
    exhausted: Final = "exhausted"
    wait: Final = "wait"
    noretry: Final = "noretry"
    # skip reasons
    duplicate: Final = "duplicate"
    finished: Final = "finished"
    deferred: Final = "deferred"


def text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def jdump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


# -- signatures ----------------------------------------------------------------

_COMMON = frozenset(
    {
        "key",
        "kind",
        "task_name",
        "creation_time",
        "task_status",
        "success_callbacks",
        "error_callbacks",
        "model_validators_path",
        "missing_callbacks",
        "task_identifiers",
        "kwargs",
        "error",
    }
)


def encode_signature(sig: Signature) -> list[str]:
    """A signature as flat ``field, value, ...`` pairs for HSET."""
    data = sig.model_dump(mode="json")
    pairs: list[str] = [
        F.version,
        SCHEMA_VERSION,
        F.kind,
        data["kind"],
        F.task,
        data["task_name"],
        F.created,
        data["creation_time"],
        F.status,
        data["task_status"]["status"],
        F.callbacks_ok,
        jdump(data["success_callbacks"]),
        F.callbacks_err,
        jdump(data["error_callbacks"]),
    ]
    if data["task_status"]["last_status"]:
        pairs += [F.last_status, data["task_status"]["last_status"]]
    if data["model_validators_path"]:
        pairs += [F.model, data["model_validators_path"]]
    if data["task_identifiers"]:
        pairs += [F.ident, jdump(data["task_identifiers"])]
    if data["missing_callbacks"]:
        pairs += [F.missing_callbacks, jdump(data["missing_callbacks"])]
    for name, value in data["kwargs"].items():
        pairs += [KWARG_PREFIX + name, jdump(value)]
    for name, value in data.items():
        if name not in _COMMON:
            pairs += [XFIELD_PREFIX + name, jdump(value)]
    return pairs


def decode_signature(key: str, raw: Sequence[Any] | Mapping[Any, Any], full_key: str) -> Signature:
    """A signature from its hash (HGETALL as a mapping or a flat list)."""
    if isinstance(raw, Mapping):
        flat = {text(k): text(v) for k, v in raw.items()}
    else:
        items = [text(x) for x in raw]
        flat = dict(zip(items[::2], items[1::2], strict=True))
    if flat.get(F.version) != SCHEMA_VERSION:
        raise StoreError(f"key {full_key!r} holds data that is not a MageFlow signature", key=key)
    try:
        data: dict[str, Any] = {
            "key": key,
            "kind": flat.get(F.kind, KIND.task),
            "task_name": flat[F.task],
            "creation_time": flat[F.created],
            "model_validators": flat.get(F.model),
            "success_callbacks": json.loads(flat.get(F.callbacks_ok, "[]")) or [],
            "error_callbacks": json.loads(flat.get(F.callbacks_err, "[]")) or [],
            "task_identifiers": json.loads(flat.get(F.ident, "{}")),
            "missing_callbacks": json.loads(flat.get(F.missing_callbacks, "[]")),
            "task_status": {
                "status": flat.get(F.status, "pending"),
                "last_status": flat.get(F.last_status) or None,
            },
            "kwargs": {
                name[len(KWARG_PREFIX) :]: json.loads(value)
                for name, value in flat.items()
                if name.startswith(KWARG_PREFIX)
            },
        }
        for name, value in flat.items():
            if name.startswith(XFIELD_PREFIX):
                data[name[len(XFIELD_PREFIX) :]] = json.loads(value)
        if F.error in flat:
            data["error"] = ErrorDetails.from_stored(json.loads(flat[F.error]))
        return _signature_adapter.validate_python(data)
    except (KeyError, ValueError, ValidationError, MageflowValidationError) as exc:
        raise StoreError(
            f"signature {key!r} is stored in a form MageFlow cannot read: {exc}", key=key
        ) from exc


# -- dispatch entries ----------------------------------------------------------


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
    kind: str = KIND.task
    mode: str = MODE.merge
    value: Any = None
    inherited: dict[str, Any] = field(default_factory=dict)
    error: Any = None


def _plain(mapping: Any) -> dict[str, Any]:
    if not isinstance(mapping, dict):  # cjson writes an empty object as {} and [] alike
        return {}
    return {k: json.loads(v) for k, v in mapping.items()}


def parse_outbox(raw: str) -> list[OutboxEntry]:
    """Entries from a JSON array of dispatch entries."""
    items = json.loads(raw)
    if not isinstance(items, list):  # cjson writes an empty array as {}
        return []
    return [
        OutboxEntry(
            key=item[E.key],
            dispatch_id=item[E.dispatch],
            task_name=item.get(E.task, ""),
            model_path=item.get(E.model),
            kwargs=_plain(item.get(E.kwargs)),
            kind=item.get(E.kind) or KIND.task,
            mode=item.get(E.mode) or MODE.merge,
            value=json.loads(item[E.value]) if isinstance(item.get(E.value), str) else None,
            inherited=_plain(item.get(E.inherited)),
            error=json.loads(item[E.error]) if isinstance(item.get(E.error), str) else None,
        )
        for item in items
    ]


# -- error replies -------------------------------------------------------------


class LockedSignal(Exception):
    """Internal: the script refused because another holder has the lock."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(key)


@dataclass(frozen=True, slots=True)
class _Refusal:
    """One error reply: the operation, its signature, and what the script said."""

    op: str
    key: str
    args: list[str]
    action: str
    sig_prefix: str

    def arg(self, i: int) -> str:
        return self.args[i] if len(self.args) > i else ""

    def culprit(self, i: int = 0) -> str:
        """The signature named in the reply (scripts may name it by its full key)."""
        return self.arg(i).removeprefix(self.sig_prefix)


def _missing(r: _Refusal) -> Exception:
    if not r.args:
        return SignatureNotFoundError(r.key)
    culprit = r.culprit()
    return SignatureNotFoundError(culprit, _MISSING[r.op].format(key=r.key, culprit=culprit))


def _corrupt(r: _Refusal) -> Exception:
    return StoreError(
        f"key {r.arg(0) or r.key!r} holds data that is not a MageFlow signature "
        "(foreign or corrupted); it was left untouched",
        key=r.key,
    )


def _invalid(r: _Refusal) -> Exception:
    if r.arg(1) == R.run:
        return InvalidTransitionError(
            r.key,
            r.arg(0),
            r.action,
            f"signature {r.key!r}: {r.action!r} is applied by the worker running the "
            "signature (when its run begins or ends), not by a lifecycle call",
        )
    message = _INVALID.get(r.op)
    return InvalidTransitionError(
        r.key,
        r.arg(0),
        r.action,
        message.format(key=r.key, status=r.arg(0)) if message else None,
    )


def _noretry(r: _Refusal) -> Exception:
    return InvalidTransitionError(
        r.key,
        r.arg(0),
        "retry",
        f"signature {r.key!r} cannot be retried: {r.arg(1)}; use clone() for a fresh copy",
    )


def _member(r: _Refusal) -> Exception:
    if r.op == "transition":
        return InvalidTransitionError(
            r.key,
            "member",
            r.action,
            f"signature {r.key!r} is a member of {r.arg(0)!r}, which is still running; "
            "cancel the chain or swarm instead",
        )
    if r.op == "remove":
        return InvalidTransitionError(
            r.arg(0),
            "member",
            "remove",
            f"signature {r.arg(0)!r} belongs to {r.arg(1)!r}, which is still running; remove "
            "the chain or swarm, or wait until it finishes",
        )
    return InvalidTransitionError(
        r.key,
        "member",
        r.action,
        f"signature {r.key!r} is a member of {r.arg(0)!r}; it runs when its chain or swarm "
        "starts it, not on its own",
    )


def _taken(r: _Refusal) -> Exception:
    taken = r.culprit()
    return MageflowValidationError(
        f"tasks: signature {taken!r} is listed twice or already belongs to a chain or swarm",
        field="tasks",
        key=taken,
    )


def _exists(r: _Refusal) -> Exception:
    key = r.culprit() or r.key
    return MageflowValidationError(
        f"key: a signature is already stored under {key!r}", field="key", key=key
    )


def _notswarm(r: _Refusal) -> Exception:
    return MageflowValidationError(f"signature {r.key!r} is not a swarm", key=r.key)


def _closed(r: _Refusal) -> Exception:
    return SwarmClosedError(
        r.key,
        r.arg(0),
        r.action,
        f"swarm {r.key!r} is closed (status {r.arg(0)!r}); it accepts no more tasks",
    )


def _full(r: _Refusal) -> Exception:
    return SwarmFullError(
        f"swarm {r.key!r} holds {r.arg(0)} tasks; adding {r.arg(2)} would exceed "
        f"max_task_allowed={r.arg(1)}",
        field="max_task_allowed",
        key=r.key,
    )


_MISSING: Final[Mapping[str, str]] = {
    "create": "signature {key!r} refers to {culprit!r}, which is not stored",
    "create_many": "the signatures refer to {culprit!r}, which is not stored",
    "add_callbacks": "callback {culprit!r} of signature {key!r} is not stored",
    "swarm_add": "{culprit!r} (a swarm member, or a callback of a new one) is not stored",
}

_INVALID: Final[Mapping[str, str]] = {
    "dispatch": "signature {key!r} cannot be run: its status is {status!r} "
    "(only pending or suspended signatures accept a run)",
    "update_kwargs": "signature {key!r} is {status}; its kwargs can no longer change",
    "add_callbacks": "signature {key!r} is {status}; callbacks added now would never fire",
}

ERRORS: Final[Mapping[str, Callable[[_Refusal], Exception]]] = {
    R.missing: _missing,
    R.corrupt: _corrupt,
    R.locked: lambda r: LockedSignal(r.key),
    R.invalid: _invalid,
    R.member: _member,
    R.taken: _taken,
    R.exists: _exists,
    R.notswarm: _notswarm,
    R.closed: _closed,
    R.full: _full,
    R.noretry: _noretry,
}
"""Every error reply a script may give, and the exception it becomes."""


def error_for(
    code: str, *, op: str, key: str, args: Sequence[Any], action: str, sig_prefix: str
) -> Exception:
    """The exception for an error reply ``code`` of script ``op`` on signature ``key``."""
    build = ERRORS.get(code)
    if build is None:
        return StoreError(f"script {op!r} gave an unknown reply {code!r} for {key!r}", key=key)
    return build(_Refusal(op, key, [text(a) for a in args], action, sig_prefix))
