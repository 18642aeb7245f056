"""Every Redis key name, hash field and TTL conversion of the store.

Layout (``P`` is the configured prefix, default ``mageflow:``)::

    P sig:<key>     hash    one signature (fields below)
    P lock:<key>    string  lock_task token, with its own expiry
    P pending       zset    full signature keys with a claimed dispatch whose
                            run has not arrived, scored by claim time (ms)
    P active        zset    full keys of task signatures whose run began and
                            has not finished, scored by the time it began or
                            the reconciler last looked at it (ms)
    P swarm:<key>:m list    a swarm's members in admission order (append-only)
    P swarm:<key>:q list    members admitted but not started yet (FIFO)
    P swarm:<key>:res hash  admission index -> member result (JSON)
    P swarm:<key>:b set     members whose run began and has not ended: at most
                            ``max_concurrency`` (BEGIN checks it; runs claimed
                            ahead of free places wait for one)
    P blob:<key>    hash    payloads of <key> too big for the engine (JSON):
                            ``in`` its run input, ``out`` its result; the
                            engine carries a reference instead (``codec.REF``).
                            TTL: ``active_ttl`` from the last write, then the
                            signature's own when it ends or is retried
                            (track() in lib/indexes.lua), except for a
                            container's member or step; deleted with the
                            signature (remove.lua)
    P idx:s:<status> zset   signature keys by the time they entered the status
    P idx:t:<task>  zset    signature keys of a task name, by creation time
    P idx:i:<name>=<value>  zset  keys by task identifier, by creation time
                            (a string value as is, any other value as JSON)
    P idx:roots     zset    keys that are neither members nor callbacks,
                            by creation time
    P ev:<key>      channel the new status, published on every change

Every index write trims the entries older than the TTL of the write (the
active TTL, the done TTL for finished statuses), so an index is bounded like
the signatures it lists; readers skip entries whose signature expired.

Signature hash fields (the attribute of :class:`F` in brackets; the Lua
scripts use the same names, ``F.status``..., which the script loader turns
into these values):
``_v`` schema version [version]; ``kind`` [kind]; ``t`` task name [task];
``ct`` creation time [created]; ``mv`` model import path [model];
``sc``/``ec`` callback keys, JSON lists [callbacks_ok/callbacks_err];
``ti`` identifiers, JSON [ident]; ``s``/``ls`` status and previous status
[status/last_status]; ``d`` current dispatch id [dispatch]; ``r`` run id that
owns the signature [run]; ``m`` input of the current/last run [input]; ``pm``
input of a parked run [parked]; ``ob`` outbox of callbacks claimed at
completion, JSON [outbox]; ``res``/``err`` outcome [result/error] (``err``
is JSON error details: type, message, traceback, signature_key); ``ce`` the
dispatch entry (JSON, see ``codec``) of a claim listed in the pending index
[claim]; ``er`` the engine's run id of the claimed dispatch, as the
engine returned it [engine_run]; ``ro`` the run options the caller gave,
JSON, used by every re-send [run_options]; ``rn`` re-sends the reconciler
made of the current dispatch [resends]; ``ud`` when (Redis time, ms) the
reconciler first found the engine not knowing a run it had named for the
current dispatch or run [unknown_since]; ``fa`` application failures of the
current run counted against the task's retry budget [failures] and ``fl`` the
attempt that counted the last one [failure_attempt] (both reset when a run
starts the signature); ``k:<name>`` one bound kwarg each, as JSON [KWARG_PREFIX];
``x:<name>`` container fields of the model [XFIELD_PREFIX].

Container fields: chain ``x:tasks`` member keys [chain_tasks], ``ci`` current
step [chain_index]; swarm ``x:config`` [swarm_config], ``x:is_swarm_closed``
[swarm_closed], counters ``n`` admitted [admitted], ``run`` running
[running] (claimed and not ended: up to ``max_concurrency`` + ``prefetch``),
``ok``/``bad`` finished [succeeded/failed], ``skp`` queued members its
failure skipped [skipped], ``fu`` when a run last found every place taken
(ms; claims ahead pause for ``PREFETCH_PAUSE``) [full_at]; both: ``st`` started
[started], ``smode``/``sv`` how members receive the start value
[start_mode/start_value], ``pkw`` kwargs inherited from outer containers
[inherited], ``pst`` start parked by suspension [parked_start], ``po`` the
outcome a member reached while the container was interrupted, settled on
resume (JSON ``{o, v, i}``) [held_outcome]. Member fields: ``p`` its container
[parent], ``pi`` its index there [parent_index], ``sm`` its own message in a
swarm [member_message].

Keeping each kwarg in its own field makes ``kwargs.aupdate`` a plain HSET
(atomic, no JSON merging in Lua) and keeps a small signature in Redis'
compact listpack encoding.

The scripts reach signature keys they learn from stored data (callbacks,
members): they get the prefix and build those names from :class:`K`, as
:class:`Keys` does. So the store targets a single Redis/valkey node, not a
cluster.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

__all__ = [
    "BLOB",
    "KWARG_PREFIX",
    "PREFETCH_PAUSE",
    "SCHEMA_VERSION",
    "XFIELD_PREFIX",
    "F",
    "K",
    "Keys",
    "ms",
]

SCHEMA_VERSION: Final = "1"
KWARG_PREFIX: Final = "k:"
XFIELD_PREFIX: Final = "x:"
PREFETCH_PAUSE: Final = timedelta(seconds=30)
"""A swarm stops claiming members ahead of free places (``SwarmConfig.prefetch``)
for this long after a run found every place taken: workers then have more free
slots than the swarm may use, and runs queued ahead would wait in them."""


class F:
    """Hash field names of a signature (see the module docstring)."""

    version: Final = "_v"
    kind: Final = "kind"
    task: Final = "t"
    created: Final = "ct"
    model: Final = "mv"
    callbacks_ok: Final = "sc"
    callbacks_err: Final = "ec"
    ident: Final = "ti"
    status: Final = "s"
    last_status: Final = "ls"
    dispatch: Final = "d"
    run: Final = "r"
    input: Final = "m"
    parked: Final = "pm"
    outbox: Final = "ob"
    result: Final = "res"
    error: Final = "err"
    claim: Final = "ce"
    engine_run: Final = "er"
    run_options: Final = "ro"
    resends: Final = "rn"
    unknown_since: Final = "ud"
    failures: Final = "fa"
    failure_attempt: Final = "fl"
    refs: Final = "rc"
    missing_callbacks: Final = "mc"
    # containers
    chain_tasks: Final = XFIELD_PREFIX + "tasks"
    chain_index: Final = "ci"
    swarm_config: Final = XFIELD_PREFIX + "config"
    swarm_closed: Final = XFIELD_PREFIX + "is_swarm_closed"
    admitted: Final = "n"
    running: Final = "run"
    succeeded: Final = "ok"
    failed: Final = "bad"
    skipped: Final = "skp"
    full_at: Final = "fu"
    started: Final = "st"
    start_mode: Final = "smode"
    start_value: Final = "sv"
    inherited: Final = "pkw"
    parked_start: Final = "pst"
    held_outcome: Final = "po"
    # members
    parent: Final = "p"
    parent_index: Final = "pi"
    member_message: Final = "sm"


class K:
    """Key name parts: ``prefix + sig + key``, ``prefix + swarm + key + queue``..."""

    sig: Final = "sig:"
    lock: Final = "lock:"
    pending: Final = "pending"
    active: Final = "active"
    swarm: Final = "swarm:"
    members: Final = ":m"
    queue: Final = ":q"
    results: Final = ":res"
    busy: Final = ":b"
    blob: Final = "blob:"
    by_status: Final = "idx:s:"
    by_task: Final = "idx:t:"
    by_identifier: Final = "idx:i:"
    roots: Final = "idx:roots"
    events: Final = "ev:"


class BLOB:
    """Fields of a signature's ``blob:`` hash (payloads stored by reference)."""

    input: Final = "in"
    result: Final = "out"


def ms(value: timedelta) -> int:
    return max(1, int(value.total_seconds() * 1000))


class Keys:
    """Key names under one prefix."""

    __slots__ = ("blob_prefix", "lock_prefix", "prefix", "sig_prefix", "swarm_prefix")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.sig_prefix = prefix + K.sig
        self.lock_prefix = prefix + K.lock
        self.swarm_prefix = prefix + K.swarm
        self.blob_prefix = prefix + K.blob

    def sig(self, key: str) -> str:
        return self.sig_prefix + key

    def blob(self, key: str) -> str:
        """Payloads of ``key`` stored by reference (fields in :class:`BLOB`)."""
        return self.blob_prefix + key

    def lock(self, key: str) -> str:
        return self.lock_prefix + key

    @property
    def pending(self) -> str:
        """Sorted set of claimed dispatches whose run has not arrived yet."""
        return self.prefix + K.pending

    @property
    def active(self) -> str:
        """Sorted set of task signatures whose run began and has not finished."""
        return self.prefix + K.active

    def swarm_members(self, key: str) -> str:
        return self.swarm_prefix + key + K.members

    def swarm_queue(self, key: str) -> str:
        return self.swarm_prefix + key + K.queue

    def swarm_results(self, key: str) -> str:
        return self.swarm_prefix + key + K.results

    def swarm_busy(self, key: str) -> str:
        """Members of swarm ``key`` whose run began and has not ended."""
        return self.swarm_prefix + key + K.busy

    def by_status(self, status: str) -> str:
        return self.prefix + K.by_status + status

    def by_task(self, task_name: str) -> str:
        return self.prefix + K.by_task + task_name

    def by_identifier(self, name: str, value: str) -> str:
        return self.prefix + K.by_identifier + name + "=" + value

    @property
    def roots(self) -> str:
        return self.prefix + K.roots

    def events(self, key: str) -> str:
        """Pub/sub channel on which every status change of ``key`` is published."""
        return self.prefix + K.events + key
