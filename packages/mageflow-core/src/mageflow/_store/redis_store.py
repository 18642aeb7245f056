"""Signature persistence on plain Redis >= 7 / valkey.

Every public method is one network round trip (a Lua script or a single
command), and every state change is one atomic script, so a crash can never
leave half a transition behind. Redis errors are mapped to ``StoreError`` here,
at the seam; script error replies are mapped by ``codec.error_for``.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

import redis.asyncio as aioredis
from redis import exceptions as redis_exc
from redis.commands.core import AsyncScript
from thirdmagic.errors import StoreError, StoreUnavailableError
from thirdmagic.signature import ChainSignature, Signature, SwarmSignature
from thirdmagic.status import LifecycleEvent, SignatureStatus

from mageflow._store.codec import (
    LockedSignal,
    OutboxEntry,
    R,
    decode_signature,
    encode_signature,
    error_for,
    jdump,
    parse_outbox,
    text,
)
from mageflow._store.keys import KWARG_PREFIX, F, Keys, ms
from mageflow._store.scripts import SCRIPTS
from mageflow.config import MageflowConfig

log = logging.getLogger("mageflow")

__all__ = [
    "BeginResult",
    "DueItem",
    "LockedSignal",
    "OutboxEntry",
    "RedisStore",
    "Settled",
    "TransitionResult",
]

_T = TypeVar("_T")

# The action named by an InvalidTransitionError when a script refuses
_ACTIONS: Mapping[str, str] = {
    "dispatch": "run",
    "update_kwargs": "update kwargs",
    "add_callbacks": "add callbacks",
    "swarm_add": "add tasks",
    "remove": "remove",
}


@dataclass(frozen=True, slots=True)
class DueItem:
    """One item of a reconciler sweep (see ``lua/recover.lua``).

    ``claimed`` is True for a claimed dispatch whose run has not begun (then
    ``entry`` is its dispatch entry), False for a begun run (``run_id`` is
    the run that began). ``run_id`` of a claim is the engine's id as the
    engine returned it at dispatch, empty when it never did.
    ``in_doubt``: an earlier look found the engine not knowing its run.
    """

    key: str
    claimed: bool
    status: str
    run_id: str = ""
    entry: OutboxEntry | None = None
    options: dict[str, Any] = field(default_factory=dict)
    resends: int = 0
    in_doubt: bool = False

    @classmethod
    def parse(cls, raw: str) -> DueItem:
        item = json.loads(raw)
        claimed = item["w"] == "c"
        entry = parse_outbox("[" + item["ce"] + "]")[0] if claimed else None
        options = json.loads(item["ro"]) if item.get("ro") else {}
        return cls(
            key=item["k"],
            claimed=claimed,
            status=item["s"],
            run_id=item.get("er") or "",
            entry=entry,
            options=options if isinstance(options, dict) else {},
            resends=int(item.get("rn") or 0),
            in_doubt=bool(item.get("ud")),
        )


@dataclass(frozen=True, slots=True)
class Settled:
    """What :meth:`RedisStore.settle` did: its reply word, the outbox of a
    failed signature's error callbacks, and how long a doubt has lasted."""

    code: str
    outbox: list[OutboxEntry] = field(default_factory=list)
    waited_ms: int = 0


@dataclass(frozen=True, slots=True)
class BeginResult:
    decision: Literal["run", "skip", "park", "drain", "wait"]
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
    options: dict[str, Any] = field(default_factory=dict)


def _starts(count: int, sigs: Sequence[str]) -> list[int]:
    """Index of each signature's key in a ``create_many`` batch."""
    at, out = 0, []
    for _ in range(count):
        out.append(at)
        at += 2 + int(sigs[at + 1])
    return out


class RedisStore:
    """Reads and writes signatures under one key prefix."""

    def __init__(self, client: aioredis.Redis, config: MageflowConfig | None = None) -> None:
        self.client = client
        self.config = config or MageflowConfig()
        self.keys = Keys(self.config.key_prefix)
        self._active_ms = ms(self.config.active_ttl)
        self._done_ms = ms(self.config.done_ttl)
        self.scripts: dict[str, AsyncScript] = {
            name: client.register_script(script.source) for name, script in SCRIPTS.items()
        }

    async def prepare(self) -> None:
        """Load every script into the server so later calls are one EVALSHA each."""
        await self._guard(lambda: self._load_scripts(list(self.scripts.values())), key=None)

    async def _load_scripts(self, scripts: Sequence[AsyncScript]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for script in scripts:
            pipe.script_load(script.script)
        shas = await pipe.execute()
        for script, sha in zip(scripts, shas, strict=True):
            script.sha = text(sha)

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
            raise StoreUnavailableError(
                f"redis is unreachable ({type(exc).__name__}: {exc}) during an operation on "
                f"{what}; the operation is atomic: it was applied completely or not at all",
                key=key,
            ) from exc
        except redis_exc.RedisError as exc:
            raise StoreError(f"redis error on {what}: {exc}", key=key) from exc

    async def _call(
        self,
        name: str,
        key: str,
        *,
        keys: Mapping[str, str],
        args: Mapping[str, Any],
        rest_keys: Sequence[str] = (),
        rest_args: Sequence[Any] = (),
        action: str | None = None,
    ) -> list[Any]:
        """Run script ``name`` with named arguments; returns a result reply, raises for errors.

        The reply's first element is the reply word (text), the rest is as the script sent it.
        """
        script = SCRIPTS[name]
        k, a = script.pack(keys, args, rest_keys, rest_args)
        call = self.scripts[name]
        raw = await self._guard(lambda: call(keys=k, args=a), key=key)
        reply = cast(list[Any], raw)
        code = text(reply[0])
        if code not in script.replies:
            raise error_for(
                code,
                op=name,
                key=key,
                args=reply[1:],
                action=action or _ACTIONS.get(name, name),
                sig_prefix=self.keys.sig_prefix,
            )
        return [code, *reply[1:]]

    async def _queue(
        self,
        pipe: Any,
        name: str,
        *,
        keys: Mapping[str, str],
        args: Mapping[str, Any],
        rest_keys: Sequence[str] = (),
        rest_args: Sequence[Any] = (),
    ) -> None:
        """Queue script ``name`` on a pipeline (its reply comes from ``pipe.execute()``)."""
        k, a = SCRIPTS[name].pack(keys, args, rest_keys, rest_args)
        await self.scripts[name](keys=k, args=a, client=pipe)

    def _container_args(self, dispatch_prefix: str) -> dict[str, Any]:
        """The leading ARGV of every script that includes lib/containers."""
        return {
            "prefix": self.keys.prefix,
            "active_ttl": self._active_ms,
            "dispatch_prefix": dispatch_prefix,
        }

    # -- encoding -----------------------------------------------------------

    def encode(self, sig: Signature) -> list[str]:
        return encode_signature(sig)

    def decode(self, key: str, raw: Sequence[Any] | Mapping[Any, Any]) -> Signature:
        return decode_signature(key, raw, self.keys.sig(key))

    # -- operations ---------------------------------------------------------

    async def create(
        self, sig: Signature, required: Sequence[str] = (), members: Sequence[str] = ()
    ) -> None:
        """Store a new signature; every key in ``required`` and ``members`` must exist.

        ``members`` (chain steps) are linked to the new signature in the same step.
        """
        await self._call(
            "create",
            sig.key,
            keys={"sig_key": self.keys.sig(sig.key)},
            rest_keys=[
                *(self.keys.sig(k) for k in members),
                *(self.keys.sig(k) for k in required),
            ],
            args={
                "active_ttl": self._active_ms,
                "members": len(members),
                "own_key": sig.key,
                "prefix": self.keys.prefix,
            },
            rest_args=self.encode(sig),
        )

    async def create_many(
        self,
        shared: Sequence[str],
        batches: Sequence[tuple[int, list[str]]],
        required: Sequence[str] = (),
    ) -> None:
        """Store batches of new signatures, one script per batch, in one transaction.

        Every signature gets the ``shared`` hash values (field, value pairs);
        each batch is ``(count, [key, n, field, value, ...] per signature)`` with
        each one's own values. The batches run in one MULTI/EXEC: no other client
        sees some of them without the others, and a client that dies before EXEC
        stores none. A missing callback refuses the first batch, so nothing is
        written; when a later batch is refused (a key taken meanwhile, a Redis
        error), the batches stored before it are undone: their hashes deleted
        and their count on each shared callback (``F.refs``) given back.
        """
        required_keys = [self.keys.sig(k) for k in required]

        async def run() -> list[Any]:
            pipe = self.client.pipeline(transaction=True)
            for count, sigs in batches:
                await self._queue(
                    pipe,
                    "create_many",
                    keys={},
                    args={
                        "prefix": self.keys.prefix,
                        "active_ttl": self._active_ms,
                        "count": count,
                        "shared": len(shared),
                    },
                    rest_keys=required_keys,
                    rest_args=[*shared, *sigs],
                )
            return await pipe.execute(raise_on_error=False)

        replies = await self._guard(run, key=None)
        failure: BaseException | None = None
        for reply in replies:
            if isinstance(reply, BaseException):
                failure = failure or reply
            elif text(reply[0]) != R.ok:
                failure = failure or error_for(
                    text(reply[0]),
                    op="create_many",
                    key="",
                    args=reply[1:],
                    action="create",
                    sig_prefix=self.keys.sig_prefix,
                )
        if failure is None:
            return
        created = [
            self.keys.sig(sigs[i])
            for reply, (count, sigs) in zip(replies, batches, strict=True)
            if not isinstance(reply, BaseException) and text(reply[0]) == R.ok
            for i in _starts(count, sigs)
        ]
        if created:

            async def undo() -> None:
                pipe = self.client.pipeline(transaction=True)
                pipe.delete(*created)
                for callback in dict.fromkeys(required_keys):
                    pipe.hincrby(callback, F.refs, -len(created))
                await pipe.execute()

            await self._guard(undo, key=None)
        if isinstance(failure, redis_exc.RedisError):
            raise StoreError(f"redis rejected creating signatures: {failure}") from failure
        raise failure

    async def load(self, key: str) -> Signature | None:
        raw = await self._guard(lambda: self.client.hgetall(self.keys.sig(key)), key=key)
        if not raw:
            return None
        return self.decode(key, cast(dict[Any, Any], raw))

    async def stored(self, keys: Sequence[str]) -> list[bool]:
        """Whether something is stored under each signature key (one script, nothing decoded)."""
        if not keys:
            return []
        reply = await self._call(
            "stored", "", keys={}, args={}, rest_keys=[self.keys.sig(k) for k in keys]
        )
        return [c == "1" for c in text(reply[1])]

    async def load_many(self, keys: Sequence[str]) -> list[Signature | None]:
        async def call() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(self.keys.sig(key))
            return await pipe.execute()

        raws = await self._guard(call, key=None)
        return [self.decode(k, r) if r else None for k, r in zip(keys, raws, strict=True)]

    async def dispatch(
        self,
        key: str,
        input_data: dict[str, Any],
        dispatch_id: str,
        token: str,
        options: Mapping[str, Any] | None = None,
    ) -> Literal["dispatch", "parked"]:
        reply = await self._call(
            "dispatch",
            key,
            keys={
                "sig_key": self.keys.sig(key),
                "lock_key": self.keys.lock(key),
                "pending_key": self.keys.pending,
            },
            args={
                "token": token,
                "input": jdump(input_data),
                "dispatch_id": dispatch_id,
                "active_ttl": self._active_ms,
                "key": key,
                "options": jdump(dict(options)) if options else "",
            },
        )
        return cast(Literal["dispatch", "parked"], reply[0])

    async def begin(
        self,
        key: str,
        dispatch_id: str,
        run_id: str,
        input_data: dict[str, Any],
        sent: Sequence[tuple[str, str, str]] = (),
        give_up: bool = False,
    ) -> BeginResult:
        """A run arrives; ``sent`` are earlier dispatches' run ids to record on the way.

        ``wait``: a swarm member found every place of its swarm taken; ask
        again later, with ``give_up`` on the last try (it hands its claim back).
        """
        sent_keys, sent_runs = self._sent(sent)
        reply = await self._call(
            "begin",
            key,
            keys={
                "sig_key": self.keys.sig(key),
                "lock_key": self.keys.lock(key),
                "pending_key": self.keys.pending,
                "active_key": self.keys.active,
            },
            args={
                **self._container_args(""),
                "done_ttl": self._done_ms,
                "dispatch_id": dispatch_id,
                "run_id": run_id,
                "input": jdump(input_data),
                "give_up": "1" if give_up else "0",
            },
            rest_keys=sent_keys,
            rest_args=sent_runs,
        )
        code = reply[0]
        if code == R.run:
            return BeginResult("run", signature=self.decode(key, reply[1]))
        if code == R.drain:
            return BeginResult("drain", outcome=text(reply[1]), outbox=parse_outbox(text(reply[2])))
        if code == R.park:
            return BeginResult("park")
        if code == R.wait:
            return BeginResult("wait")
        return BeginResult("skip", reason=text(reply[1]) if len(reply) > 1 else "")

    async def finish(
        self,
        key: str,
        *,
        succeeded: bool,
        run_id: str,
        payload: Any,
        attempt: str = "",
        retries: int = -1,
        redispatch: bool = False,
        sent: Sequence[tuple[str, str, str]] = (),
    ) -> tuple[str, list[OutboxEntry]]:
        """Record how an attempt ended; returns (code, claimed dispatches).

        A success, or a failure with ``retries < 0`` (the caller decided it is
        final), is the run's outcome. Any other failure is counted against the
        budget ``retries`` once per ``attempt`` (an id of this delivery):
        ``retry`` while the budget lasts (with ``redispatch``, the outbox holds
        the claimed new run that makes the retry), else the failure is recorded.

        code is ``ok`` (this call recorded it), ``already`` (a repeat; the outbox
        is returned again so a lost dispatch can be redone), ``retry``, or
        ``missing``, ``stale``, ``invalid`` (nothing recorded, nothing to dispatch).
        ``sent`` are earlier dispatches' run ids to record on the way (as ``record_runs``).
        """
        sent_keys, sent_runs = self._sent(sent)
        reply = await self._call(
            "finish",
            key,
            keys={"sig_key": self.keys.sig(key), "lock_key": self.keys.lock(key)},
            args={
                **self._container_args(run_id),
                "done_ttl": self._done_ms,
                "outcome": (LifecycleEvent.SUCCEED if succeeded else LifecycleEvent.FAIL).value,
                "payload": jdump(payload),
                "attempt": attempt,
                "retries": retries,
                "redispatch": 1 if redispatch else 0,
            },
            rest_keys=sent_keys,
            rest_args=sent_runs,
        )
        code = reply[0]
        if code == R.ok and len(reply) > 2:
            gone = json.loads(text(reply[2]))
            log.warning(
                "signature %s settled but its callback(s) %s were no longer stored (deleted "
                "before it ran); they did not run. Recorded as missing_callbacks on %s",
                key,
                ", ".join(gone),
                key,
            )
        if code in (R.ok, R.already, R.retry):
            return code, parse_outbox(text(reply[1]))
        return code, []

    async def transition(
        self, key: str, event: LifecycleEvent, token: str, new_dispatch_id: str
    ) -> TransitionResult:
        reply = await self._call(
            "transition",
            key,
            keys={
                "sig_key": self.keys.sig(key),
                "lock_key": self.keys.lock(key),
                "pending_key": self.keys.pending,
            },
            args={
                "event": event.value,
                "token": token,
                "active_ttl": self._active_ms,
                "done_ttl": self._done_ms,
                "dispatch_id": new_dispatch_id,
                "key": key,
            },
            action=event.value,
        )
        code, status, previous, run, replay, dispatch_id, kind, task_name, options = (
            text(x) for x in reply
        )
        return TransitionResult(
            SignatureStatus(status),
            SignatureStatus(previous) if previous else None,
            changed=code != R.noop,
            run_id=run or None,
            replay_input=json.loads(replay) if code == R.replay else None,
            dispatch_id=dispatch_id or None,
            kind=kind,
            task_name=task_name,
            options=json.loads(options) if options else {},
        )

    async def update_kwargs(self, key: str, values: dict[str, Any], token: str) -> None:
        if not values:
            return
        fields: list[str] = []
        for name, value in values.items():
            fields += [KWARG_PREFIX + name, jdump(value)]
        await self._call(
            "update_kwargs",
            key,
            keys={"sig_key": self.keys.sig(key), "lock_key": self.keys.lock(key)},
            args={"token": token, "active_ttl": self._active_ms},
            rest_args=fields,
        )

    async def add_callbacks(
        self, key: str, success: Sequence[str], errors: Sequence[str], token: str
    ) -> None:
        await self._call(
            "add_callbacks",
            key,
            keys={"sig_key": self.keys.sig(key), "lock_key": self.keys.lock(key)},
            rest_keys=[self.keys.sig(k) for k in (*success, *errors)],
            args={
                "token": token,
                "active_ttl": self._active_ms,
                "n_success": len(success),
                "prefix": self.keys.prefix,
            },
            rest_args=[*success, *errors],
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
        reply = await self._call(
            "remove",
            key,
            keys={"sig_key": self.keys.sig(key)},
            args={
                "held": jdump(tokens) if tokens else "{}",
                "with_error": int(with_error),
                "with_success": int(with_success),
                "prefix": self.keys.prefix,
            },
        )
        return int(reply[1])

    # -- payloads by reference (mageflow._payloads) --------------------------------

    async def put_blob(self, key: str, field: str, encoded: str) -> None:
        """Store one JSON payload of ``key`` (its TTL restarts at ``active_ttl``)."""
        blob = self.keys.blob(key)

        async def call() -> None:
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(blob, field, encoded)
            pipe.pexpire(blob, self._active_ms)
            await pipe.execute()

        await self._guard(call, key=key)

    async def get_blob(self, key: str, field: str) -> str | None:
        raw = await self._guard(lambda: self.client.hget(self.keys.blob(key), field), key=key)
        return None if raw is None else text(raw)

    async def swarm_results(self, key: str, start: int, stop: int) -> list[str | None]:
        """Stored results of members ``start <= i < stop`` of swarm ``key`` (None: no result).

        Raises ``StoreError`` when the swarm itself is gone (removed, or its TTL
        ran out): its results went with it, and a list of ``None`` would read as
        if every member had failed.
        """
        if stop <= start:
            return []

        async def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            pipe.hmget(self.keys.swarm_results(key), [str(i) for i in range(start, stop)])
            pipe.exists(self.keys.sig(key))
            return await pipe.execute()

        raw, exists = await self._guard(read, key=key)
        if not exists:
            raise StoreError(
                f"the results of swarm {key!r} are gone: the swarm was removed or its TTL "
                "(MageflowConfig.done_ttl after it completed) ran out",
                key=key,
            )
        return [None if x is None else text(x) for x in cast(list[Any], raw)]

    # -- containers -----------------------------------------------------------

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
        pkw = {k: jdump(v) for k, v in (inherited or {}).items()}
        reply = await self._call(
            "advance",
            key,
            keys={"sig_key": self.keys.sig(key), "lock_key": self.keys.lock(key)},
            args={
                **self._container_args(dispatch_prefix),
                "done_ttl": self._done_ms,
                "token": token,
                "action": action,
                "dispatch_id": dispatch_id,
                "mode": mode,
                "value": jdump(value if value is not None else {}),
                "inherited": jdump(pkw),
            },
        )
        if reply[0] == R.ok:
            return R.ok, parse_outbox(text(reply[1]))
        return reply[0], []

    async def swarm_add(
        self,
        key: str,
        count: int,
        groups: tuple[int, Sequence[str]],
        members: Sequence[str],
        *,
        token: str,
        dispatch_prefix: str,
    ) -> list[OutboxEntry]:
        """Admit ``count`` members, storing the new ones in the same step (``swarm_add.lua``).

        ``groups`` is ``(how many, their field lists)`` and ``members`` the
        per-member values, laid out as the script's header says.
        """
        reply = await self._call(
            "swarm_add",
            key,
            keys={"sig_key": self.keys.sig(key), "lock_key": self.keys.lock(key)},
            args={
                **self._container_args(dispatch_prefix),
                "token": token,
                "count": count,
                "groups": groups[0],
            },
            rest_args=[*groups[1], *members],
        )
        return parse_outbox(text(reply[1]))

    async def swarm_close(self, key: str, *, token: str, dispatch_prefix: str) -> list[OutboxEntry]:
        reply = await self._call(
            "swarm_close",
            key,
            keys={"sig_key": self.keys.sig(key), "lock_key": self.keys.lock(key)},
            args={
                **self._container_args(dispatch_prefix),
                "done_ttl": self._done_ms,
                "token": token,
            },
        )
        return parse_outbox(text(reply[1]))

    # -- reconciliation ---------------------------------------------------------

    async def due_for_reconcile(self, older_than_ms: int, limit: int) -> list[DueItem]:
        """Claims and begun runs not heard of for ``older_than_ms`` (leased to the caller)."""
        reply = await self._call(
            "recover",
            "",
            keys={"pending_key": self.keys.pending, "active_key": self.keys.active},
            args={"age_ms": older_than_ms, "limit": limit, "sig_prefix": self.keys.sig_prefix},
        )
        return [DueItem.parse(text(x)) for x in reply[1:]]

    async def record_runs(self, sent: Sequence[tuple[str, str, str]]) -> None:
        """Keep the engine's run id of each ``(key, dispatch id, run id)`` with its claim."""
        if not sent:
            return
        sent_keys, sent_runs = self._sent(sent)
        await self._call(
            "sent", sent[0][0], keys={}, args={}, rest_keys=sent_keys, rest_args=sent_runs
        )

    def _sent(self, sent: Sequence[tuple[str, str, str]]) -> tuple[list[str], list[str]]:
        """The trailing KEYS and ARGV that carry ``(key, dispatch id, run id)`` records."""
        pairs: list[str] = []
        for _, dispatch_id, run_id in sent:
            pairs += [dispatch_id, run_id]
        return [self.keys.sig(k) for k, _, _ in sent], pairs

    async def unclaim(self, key: str, dispatch_id: str) -> bool:
        """Take back a claim the engine refused; False when the signature moved on meanwhile."""
        reply = await self._call(
            "unclaim",
            key,
            keys={"sig_key": self.keys.sig(key), "pending_key": self.keys.pending},
            args={"dispatch_id": dispatch_id},
        )
        return bool(reply[0] == R.ok)

    async def settle(
        self,
        key: str,
        *,
        action: Literal["fail", "cancel", "resend", "doubt", "known"],
        dispatch_id: str = "",
        run_id: str = "",
        error: dict[str, Any] | None = None,
        max_resends: int = 0,
        window_ms: int = 0,
    ) -> Settled:
        """Settle ``key`` as the reconciler decided; ``stale`` when it moved on (another won).

        ``error`` is what the store keeps as the failure (``ErrorDetails`` as a dict).

        ``resend`` (a claim) replies ``exhausted`` when the claim was re-sent
        ``max_resends`` times, or ``wait`` while the engine's not knowing its
        run is younger than ``window_ms``. ``doubt`` (the engine does not know
        the run): a claim is re-sent like ``resend``; a begun run replies
        ``wait`` within ``window_ms`` of the first such look, then fails
        (``ok`` with the outbox). ``known`` ends a doubt. See ``lua/settle.lua``.
        """
        reply = await self._call(
            "settle",
            key,
            keys={
                "sig_key": self.keys.sig(key),
                "lock_key": self.keys.lock(key),
                "pending_key": self.keys.pending,
                "active_key": self.keys.active,
            },
            args={
                **self._container_args(uuid.uuid4().hex),
                "done_ttl": self._done_ms,
                "action": action,
                "dispatch_id": dispatch_id,
                "run_id": run_id,
                "payload": jdump(error or {}),
                "max_resends": max_resends,
                "window_ms": window_ms,
            },
        )
        if reply[0] == R.ok:
            return Settled(R.ok, parse_outbox(text(reply[1])))
        if reply[0] == R.wait:
            return Settled(R.wait, waited_ms=int(text(reply[1])))
        return Settled(reply[0])

    async def members(self, sig: Signature) -> list[str]:
        """Member keys of a chain or swarm (empty for a task)."""
        if isinstance(sig, ChainSignature):
            return list(sig.tasks)
        if isinstance(sig, SwarmSignature):
            raw = await self._guard(
                lambda: self.client.lrange(self.keys.swarm_members(sig.key), 0, -1), key=sig.key
            )
            return [text(x) for x in cast(list[Any], raw)]
        return []

    async def lock_and_load(self, key: str, token: str) -> Signature | None:
        """Take the lock and read the signature in one step; None if someone else holds it."""
        reply = await self._call(
            "lock",
            key,
            keys={"sig_key": self.keys.sig(key), "lock_key": self.keys.lock(key)},
            args={"token": token, "lock_ttl": ms(self.config.lock_ttl)},
        )
        if reply[0] != R.ok:
            return None
        try:
            return self.decode(key, reply[1])
        except StoreError:
            await self.release_lock(key, token)
            raise

    async def release_lock(self, key: str, token: str) -> None:
        await self._call(
            "unlock", key, keys={"lock_key": self.keys.lock(key)}, args={"token": token}
        )

    async def renew_lock(self, key: str, token: str) -> bool:
        """Push the lock's expiry to ``lock_ttl`` from now; False if this holder lost it."""
        reply = await self._call(
            "renew_lock",
            key,
            keys={"lock_key": self.keys.lock(key)},
            args={"token": token, "lock_ttl": ms(self.config.lock_ttl)},
        )
        return bool(int(reply[1]))
