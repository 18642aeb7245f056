"""Admitting tasks into a swarm: the new members are stored by the script that admits them.

Members may be stored keys, signature objects (stored or not), task names or
task objects. ``swarm_add.lua`` checks the swarm and every member first and
then stores and admits them all, so a refused admission (closed, cancelled,
full, a member taken or missing) leaves nothing behind by construction:

* a task name or task object becomes a new signature inside the script. Each
  task's fields are encoded once (a group); a member adds only its key and its
  message, which keeps a 10 000-member admission to one round trip and a few
  microseconds of client CPU per member (issue 10);
* an unsaved plain task signature travels whole and is stored the same way;
* an unsaved chain or swarm object, or a signature with unsaved callbacks
  attached, is a flow of its own: it is stored first through the hand-over
  (all or nothing) and removed again if the admission is refused.

Messages are checked before anything is sent: every message that is not
JSON data is reported by its index (:class:`BulkValidationError`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from thirdmagic.errors import BulkValidationError, MageflowValidationError
from thirdmagic.handover import FlowSpec
from thirdmagic.signature import Signature, TaskSignature

from mageflow import _build, _handover, _merge
from mageflow._intake import check_new
from mageflow._store.codec import encode_signature, jdump

if TYPE_CHECKING:
    from mageflow._runtime import MageflowRuntime

__all__ = ["Admission", "encode_messages", "plan"]

STORED = "0"
"""Shape of a member that is a stored signature (see ``swarm_add.lua``)."""


@dataclass(slots=True)
class Admission:
    """One ``swarm_add.lua`` call: its groups and members, laid out as its header says."""

    keys: list[str] = field(default_factory=list)
    """the members' keys, in order"""
    groups: list[str] = field(default_factory=list)
    group_count: int = 0
    members: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    """signatures stored before the script (unsaved flows): removed if it refuses"""


def _plain_json(msg: Any) -> str | None:
    """``msg`` as JSON when it is a dict of plain JSON values, else None (take the long way)."""
    if type(msg) is not dict or not all(type(k) is str for k in msg):
        return None
    try:
        return jdump(msg)
    except (TypeError, ValueError):
        return None  # not plain JSON (a model, a date, NaN ...): message_data says what


def encode_messages(msgs: Sequence[Any]) -> list[str]:
    """Each message as JSON, or every one that is not JSON data reported by index."""
    out: list[str] = []
    errors: list[tuple[int, str, str]] = []
    last: Any = None
    for i, msg in enumerate(msgs):
        if i and msg is last and len(out) == i:
            out.append(out[-1])  # aio_run_in_swarm: one message object for every task
            continue
        last = msg
        fast = _plain_json(msg)
        if fast is not None:
            out.append(fast)
            continue
        try:
            out.append(jdump(_merge.message_data(msg)))
        except MageflowValidationError as exc:
            errors.append((i, exc.field or "msg", str(exc)))
    if errors:
        raise BulkValidationError(errors)
    return out


def _new_keys(count: int) -> Iterator[str]:
    """Keys as ``new_key("task")`` makes them, from one read of the random source."""
    raw = os.urandom(16 * count).hex()
    return (f"task-{raw[i : i + 32]}" for i in range(0, 32 * count, 32))


async def _stored(runtime: MageflowRuntime, keys: list[str]) -> set[str]:
    found = await runtime.store.stored(keys)
    return {k for k, there in zip(keys, found, strict=True) if there}


def _items(tasks: Any) -> list[Any]:
    if isinstance(tasks, (str, Signature)) or not isinstance(tasks, (list, tuple)):
        return [tasks]
    return list(tasks)


async def plan(runtime: MageflowRuntime, tasks: Any, messages: Sequence[str] | None) -> Admission:
    """The admission of ``tasks`` (with ``messages``, JSON, one per task, when given)."""
    items = _items(tasks)
    # existence only, once per distinct string or key: ["noop"] * 10 000 is one
    # key to look at, and 10 000 stored signatures are not read back
    probe = list(
        dict.fromkeys(
            t if isinstance(t, str) else t.key for t in items if isinstance(t, (str, Signature))
        )
    )
    stored = await _stored(runtime, probe)
    # an unsaved signature goes in whole when what it refers to is stored
    specs = {
        id(t): FlowSpec.of(t) for t in items if isinstance(t, Signature) and t.key not in stored
    }
    attached = list(
        dict.fromkeys(
            s.key for spec in specs.values() for s in spec.signatures if s.key not in stored
        )
    )
    stored |= await _stored(runtime, attached)
    out = Admission()
    groups: dict[str, str] = {}  # task name -> its group's shape
    named: dict[str, str] = {}  # a task given by name -> its group's shape
    fresh = _new_keys(len(items))
    members, keys = out.members, out.keys
    try:
        for i, item in enumerate(items):
            msg = "" if messages is None else messages[i]
            if (isinstance(item, Signature) and item.key in stored) or (
                isinstance(item, str) and item in stored
            ):
                key = item if isinstance(item, str) else item.key
                members += [STORED, key, msg]
            elif isinstance(item, TaskSignature) and all(
                s.key in stored for s in specs[id(item)].signatures if s is not item
            ):
                check_new(item)
                values = encode_signature(item)
                cbs = [*item.success_callbacks, *item.error_callbacks]
                key = item.key
                members += [f"0,{len(values) // 2},{len(cbs)}", key, msg, *values, *cbs]
            elif isinstance(item, Signature):
                await _handover.submit(runtime, specs[id(item)], out.created)
                stored.add(item.key)
                key = item.key
                members += [STORED, key, msg]
            else:
                shape = named.get(item) if isinstance(item, str) else None
                if shape is None:
                    name, _, _ = _build.resolve_task(runtime, item)
                    shape = groups.get(name)
                    if shape is None:
                        values = encode_signature(_build.task_signature(runtime, item))
                        out.groups += [str(len(values)), *values]
                        out.group_count += 1
                        shape = groups[name] = str(out.group_count)
                    if isinstance(item, str):
                        named[item] = shape
                key = next(fresh)
                members += [shape, key, msg]
            keys.append(key)
    except BaseException:
        await _handover.discard(runtime, out.created)
        raise
    return out
