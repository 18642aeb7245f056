"""Finding signatures: by status, task name, identifier, root flows, stuck ones.

Reads only the indexes the store's scripts maintain (``P idx:*`` sorted sets,
see ``_store/schema.py``), never ``KEYS`` or ``SCAN``. An index may still
list a signature that expired or was removed; such entries are skipped and
dropped from the index as they are met.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from thirdmagic.errors import MageflowValidationError
from thirdmagic.signature import Signature
from thirdmagic.status import SignatureStatus

if TYPE_CHECKING:
    from mageflow._store.redis_store import RedisStore

__all__ = ["StuckSignature", "identifier_text", "list_signatures", "stuck_signatures"]

_PAGE = 200
_MAX_SCANNED = 20_000


def identifier_text(value: Any) -> str:
    """How an identifier value is written in its index name (as the Lua side does)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    import json

    return json.dumps(value, separators=(",", ":"))


def _parse_identifiers(identifiers: Any) -> dict[str, str]:
    if identifiers is None:
        return {}
    if isinstance(identifiers, str):
        identifiers = [identifiers]
    if isinstance(identifiers, dict):
        return {str(k): identifier_text(v) for k, v in identifiers.items()}
    out: dict[str, str] = {}
    for item in identifiers:
        name, sep, value = str(item).partition("=")
        if not sep or not name:
            raise MageflowValidationError(
                f"identifier: expected NAME=VALUE, got {item!r}", field="identifier"
            )
        out[name] = value
    return out


def _status(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return SignatureStatus(value).value
    except ValueError:
        choices = ", ".join(s.value for s in SignatureStatus)
        raise MageflowValidationError(
            f"status: expected one of {choices}, got {value!r}", field="status"
        ) from None


def _matches(sig: Signature, status: str | None, task: str | None, idents: dict[str, str]) -> bool:
    if status is not None and sig.status.value != status:
        return False
    if task is not None and sig.task_name != task:
        return False
    for name, value in idents.items():
        if name not in sig.task_identifiers:
            return False
        if identifier_text(sig.task_identifiers[name]) != value:
            return False
    return True


async def _walk(store: RedisStore, index: str, limit: int, keep: Any) -> list[Signature]:
    """Newest first through ``index``, loading signatures a page at a time."""
    found: list[Signature] = []
    start = 0
    while len(found) < limit and start < _MAX_SCANNED:
        raw: list[Any] = await store._guard(
            partial(store.client.zrevrange, index, start, start + _PAGE - 1), key=None
        )
        keys = [k.decode() if isinstance(k, bytes) else str(k) for k in raw]
        if not keys:
            break
        sigs = await store.load_many(keys)
        gone = [k for k, sig in zip(keys, sigs, strict=True) if sig is None]
        if gone:
            await store._guard(partial(store.client.zrem, index, *gone), key=None)
        for sig in sigs:
            if sig is not None and keep(sig):
                found.append(sig)
                if len(found) >= limit:
                    break
        start += _PAGE - len(gone)
    return found


async def list_signatures(
    store: RedisStore,
    *,
    status: SignatureStatus | str | None = None,
    task: str | None = None,
    identifiers: Any = None,
    roots: bool = False,
    limit: int = 50,
) -> list[Signature]:
    """Signatures matching every given filter, newest first, at most ``limit``.

    Without filters (or with ``roots=True``, which the other filters then
    narrow) the root flows are listed: signatures that are neither a member
    of a chain/swarm nor a callback.
    ``identifiers`` is a mapping, or ``"name=value"`` strings; a value given
    as text matches a stored number or string of the same text.
    """
    if not isinstance(limit, int) or limit < 1:
        raise MageflowValidationError(
            f"limit: expected an integer >= 1, got {limit!r}", field="limit"
        )
    wanted = _status(status)
    idents = _parse_identifiers(identifiers)
    if task is not None and (not isinstance(task, str) or not task):
        raise MageflowValidationError(f"task: expected a task name, got {task!r}", field="task")
    keys = store.keys
    if roots or (not idents and task is None and wanted is None):
        index = keys.roots
    elif idents:
        name, value = next(iter(idents.items()))
        index = keys.by_identifier(name, value)
    elif task is not None:
        index = keys.by_task(task)
    else:
        assert wanted is not None
        index = keys.by_status(wanted)
    return await _walk(store, index, limit, lambda sig: _matches(sig, wanted, task, idents))


@dataclass(frozen=True, slots=True)
class StuckSignature:
    """A signature that may be stuck, with why it was picked and since when."""

    signature: Signature
    reason: str
    since: datetime


async def stuck_signatures(
    store: RedisStore,
    *,
    older_than: timedelta = timedelta(minutes=30),
    claim_older_than: timedelta = timedelta(minutes=5),
    limit: int = 100,
) -> list[StuckSignature]:
    """Candidates: active, suspended or interrupted for longer than ``older_than``
    without a status change, and dispatches claimed longer than
    ``claim_older_than`` ago whose run never arrived."""
    if not isinstance(limit, int) or limit < 1:
        raise MageflowValidationError(
            f"limit: expected an integer >= 1, got {limit!r}", field="limit"
        )
    secs, micros = await store._guard(store.client.time, key=None)
    now_ms = int(secs) * 1000 + int(micros) // 1000
    cut = now_ms - int(older_than.total_seconds() * 1000)
    claim_cut = now_ms - int(claim_older_than.total_seconds() * 1000)
    picks: list[tuple[str, str, float]] = []
    for status in ("active", "suspended", "interrupted"):
        raw: list[Any] = await store._guard(
            partial(
                store.client.zrangebyscore,
                store.keys.by_status(status),
                "-inf",
                cut,
                start=0,
                num=limit,
                withscores=True,
            ),
            key=None,
        )
        picks += [(_key(k), f"{status} without change", float(score)) for k, score in raw]
    raw = await store._guard(
        partial(
            store.client.zrangebyscore,
            store.keys.pending,
            "-inf",
            claim_cut,
            start=0,
            num=limit,
            withscores=True,
        ),
        key=None,
    )
    prefix = store.keys.sig_prefix
    picks += [
        (_key(k)[len(prefix) :], "dispatch claimed, run never arrived", float(score))
        for k, score in raw
    ]
    picks.sort(key=lambda p: p[2])
    picks = picks[:limit]
    sigs = await store.load_many([p[0] for p in picks])
    return [
        StuckSignature(sig, reason, datetime.fromtimestamp(score / 1000, UTC))
        for (_, reason, score), sig in zip(picks, sigs, strict=True)
        if sig is not None
    ]


def _key(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
