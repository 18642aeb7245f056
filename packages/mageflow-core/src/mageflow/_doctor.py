"""``mageflow doctor``: check the container invariants of docs/containers.md on live data.

Signatures are found through the status indexes (no ``KEYS``/``SCAN``). What
is reported:

* ``counters``: a swarm's ``running + queued + done + failed`` exceeds
  ``admitted``, a counter is negative, or ``admitted`` differs from the
  length of its member list (invariant 1, 5).
* ``concurrency``: a swarm runs more members than ``max_concurrency``, or has
  more sent to the engine than that plus ``prefetch`` (2).
* ``membership``: a member does not point back to its container.
* ``chain``: a chain's current step is out of range, or an earlier step is
  not done while the chain is still active.
* ``index``: a status index lists a signature under a status it no longer
  has, or lists a signature that no longer exists.
* ``stuck``: candidates from ``stuck_signatures`` (not a violation by
  itself: a long task is not a stuck one).

``repair`` fixes only the ``index`` findings: indexes are derived data, so
rewriting an entry from the signature's own status cannot lose or change
anything. Everything else is reported for a human to decide.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from thirdmagic.signature import ChainSignature, SwarmSignature
from thirdmagic.status import SignatureStatus

from mageflow import _query
from mageflow._store.keys import F

if TYPE_CHECKING:
    from mageflow._runtime import MageflowRuntime

__all__ = ["Finding", "run_doctor"]

_PAGE = 500


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    key: str
    detail: str
    repaired: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _claims(runtime: MageflowRuntime, key: str) -> tuple[int, int]:
    """A swarm's claimed members (sent, not ended) and those whose run began."""
    store = runtime.store

    async def read() -> list[Any]:
        pipe = store.client.pipeline(transaction=False)
        pipe.hget(store.keys.sig(key), F.running)
        pipe.scard(store.keys.swarm_busy(key))
        return await pipe.execute()

    run, busy = await store._guard(read, key=key)
    return int(_text(run)) if run is not None else 0, int(busy or 0)


async def run_doctor(
    runtime: MageflowRuntime,
    *,
    repair: bool = False,
    limit: int = 10_000,
    stuck_after: timedelta = timedelta(minutes=30),
    progress: Callable[[int], None] | None = None,
) -> list[Finding]:
    """Findings over every indexed signature; ``progress`` is told the running count."""
    store = runtime.store
    checked = 0
    client = store.client
    findings: list[Finding] = []
    for status in SignatureStatus:
        index = store.keys.by_status(status.value)
        start = 0
        while start < limit:
            raw = await store._guard(
                lambda s=start, i=index: client.zrange(i, s, s + _PAGE - 1),  # type: ignore[misc]
                key=None,
            )
            keys = [_text(k) for k in raw]
            if not keys:
                break
            start += len(keys)
            checked += len(keys)
            if progress is not None:
                progress(checked)

            async def statuses(ks: list[str] = keys) -> list[Any]:
                pipe = client.pipeline(transaction=False)
                for k in ks:
                    pipe.hget(store.keys.sig(k), F.status)
                return await pipe.execute()

            found = await store._guard(statuses, key=None)
            for key, actual in zip(keys, found, strict=True):
                if actual is None:
                    findings.append(
                        await _index_fix(runtime, index, key, None, repair, "signature is gone")
                    )
                elif _text(actual) != status.value:
                    findings.append(
                        await _index_fix(
                            runtime,
                            index,
                            key,
                            _text(actual),
                            repair,
                            f"listed as {status.value} but is {_text(actual)}",
                        )
                    )
                else:
                    findings += await _check_container(runtime, key)
    for stuck in await _query.stuck_signatures(store, older_than=stuck_after, limit=100):
        findings.append(
            Finding("stuck", stuck.signature.key, f"{stuck.reason} since {stuck.since.isoformat()}")
        )
    return findings


async def _index_fix(
    runtime: MageflowRuntime,
    index: str,
    key: str,
    actual: str | None,
    repair: bool,
    detail: str,
) -> Finding:
    if not repair:
        return Finding("index", key, detail)
    store = runtime.store

    async def fix() -> None:
        pipe = store.client.pipeline(transaction=True)
        pipe.zrem(index, key)
        if actual is not None:
            pipe.zadd(store.keys.by_status(actual), {key: await _now_ms(runtime)})
        await pipe.execute()

    await store._guard(fix, key=key)
    return Finding("index", key, detail, repaired=True)


async def _now_ms(runtime: MageflowRuntime) -> int:
    secs, micros = await runtime.store._guard(runtime.store.client.time, key=None)
    return int(secs) * 1000 + int(micros) // 1000


async def _check_container(runtime: MageflowRuntime, key: str) -> list[Finding]:
    store = runtime.store
    kind = await store._guard(lambda: store.client.hget(store.keys.sig(key), F.kind), key=key)
    if kind is None or _text(kind) not in ("chain", "swarm"):
        return []
    sig = await store.load(key)
    if sig is None:
        return []
    out: list[Finding] = []
    members = await store.members(sig)
    links = await _links(runtime, members)
    for i, (member, link) in enumerate(zip(members, links, strict=True)):
        parent, index = link
        if parent is None:
            continue  # a member that expired or was removed with its own TTL
        if parent != key or index != str(i):
            out.append(
                Finding("membership", member, f"member {i} of {key} points to {parent}[{index}]")
            )
    if isinstance(sig, SwarmSignature):
        p = await runtime.progress(key)
        counted = p.running + p.queued + p.done + p.failed
        if min(p.running, p.queued, p.done, p.failed) < 0:
            out.append(Finding("counters", key, f"negative counter: {p.model_dump()}"))
        if counted > p.admitted:
            out.append(
                Finding(
                    "counters",
                    key,
                    f"running {p.running} + queued {p.queued} + done {p.done} + failed "
                    f"{p.failed} = {counted} > admitted {p.admitted}",
                )
            )
        if p.admitted != len(members):
            out.append(
                Finding("counters", key, f"admitted {p.admitted} but {len(members)} members listed")
            )
        cap, ahead = sig.config.max_concurrency, sig.config.prefetch
        claimed, busy = await _claims(runtime, key)
        if busy > cap or claimed > cap + ahead:
            out.append(
                Finding(
                    "concurrency",
                    key,
                    f"{busy} running, {claimed} sent to the engine > max_concurrency {cap} "
                    f"(+ prefetch {ahead})",
                )
            )
    elif isinstance(sig, ChainSignature) and sig.status.value == "active":
        ci_raw = await store._guard(
            lambda: store.client.hget(store.keys.sig(key), F.chain_index), key=key
        )
        ci = int(_text(ci_raw)) if ci_raw is not None else 0
        if not 0 <= ci < len(sig.tasks):
            out.append(
                Finding("chain", key, f"current step {ci} out of range 0..{len(sig.tasks) - 1}")
            )
        else:
            steps = await store.load_many(sig.tasks[:ci])
            for i, step in enumerate(steps):
                if step is not None and step.status.value != "done":
                    out.append(
                        Finding("chain", key, f"step {i} is {step.status.value} but step {ci} runs")
                    )
    return out


async def _links(
    runtime: MageflowRuntime, members: list[str]
) -> list[tuple[str | None, str | None]]:
    store = runtime.store

    async def read() -> list[Any]:
        pipe = store.client.pipeline(transaction=False)
        for m in members:
            pipe.hmget(store.keys.sig(m), [F.parent, F.parent_index])
        return await pipe.execute()

    if not members:
        return []
    raw = await store._guard(read, key=None)
    return [(None if p is None else _text(p), None if i is None else _text(i)) for p, i in raw]


def findings_json(findings: list[Finding]) -> str:
    return json.dumps([f.as_dict() for f in findings], indent=2)
