"""The Lua scripts of the store: read from ``lua/*.lua``, expanded, registered by name.

Each ``lua/<name>.lua`` is one script. It starts with a machine-readable header::

    -- KEYS: sig_key, lock_key, callbacks...
    -- ARGV: token, active_ttl, fields...
    -- REPLIES: ok, skip

``KEYS``/``ARGV`` name the arguments in order; a trailing ``name...`` takes
the rest (its first index is ``KEYS_REST``/``ARGV_REST`` in Lua, and the
caller passes it as one sequence). ``REPLIES`` lists the reply words the
caller handles as results; any other reply is an error and goes through
``codec.error_for``. ``-- @include lib/<name>`` pulls in ``lua/lib/<name>.lua``
(once per script, includes nest).

The loader generates the rest from Python, so neither side spells a name the
other defines:

* a header with the tables the script uses, the transition table ``T``,
  ``TERMINAL`` and ``RUN_EVENT`` (from ``thirdmagic.status``), ``PREVIOUS``,
  ``SCHEMA_VERSION`` and ``KWARG_PREFIX`` (``keys``), and one ``local`` per
  named argument;
* the value of every ``TABLE.name`` the script reads, written in place:
  ``F`` hash fields and ``K`` key parts (``keys``), ``S`` statuses and ``EV``
  events (``thirdmagic.status``), ``R`` reply words, ``E`` dispatch entry
  fields, ``MODE`` and ``KIND`` (``codec``). In place rather than as header
  tables, because a table costs its construction on every call; a name Python
  does not define fails at import;
* library functions the script never calls are left out, for the same reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from itertools import takewhile
from typing import Any, Final

from thirdmagic.status import PREVIOUS, TERMINAL_STATUSES, TRANSITIONS, LifecycleEvent
from thirdmagic.status import SignatureStatus as Status

from mageflow._store import codec, keys

__all__ = ["NAMESPACES", "RUN_EVENTS", "SCRIPTS", "Script", "constants", "expand", "load"]

RUN_EVENTS: Final = (
    LifecycleEvent.START,
    LifecycleEvent.SUCCEED,
    LifecycleEvent.FAIL,
    LifecycleEvent.SKIP,
)
"""Events of a run: applied by BEGIN and FINISH only (SKIP: by the step that
settles a callback's parent), refused by TRANSITION."""

_LUA: Final = resources.files("mageflow._store").joinpath("lua")
_INCLUDE: Final = re.compile(r"^-- @include ([\w/]+)\s*$", re.MULTILINE)
_HEADER: Final = re.compile(r"^-- (KEYS|ARGV|REPLIES):(.*)$", re.MULTILINE)
_LOCAL: Final = re.compile(r"^local (?:function )?([\w, ]+?)(?:\(| =)", re.MULTILINE)
_FUNCTION: Final = re.compile(
    r"^(?:--[^\n]*\n)*local function (\w+)\(.*?^end\n", re.MULTILINE | re.DOTALL
)
_NAME: Final = re.compile(r"^[a-z_][a-z0-9_]*$")
# Lua words that cannot be a table field name in `{name = ...}` form
_RESERVED: Final = frozenset(
    {"and", "break", "do", "else", "elseif", "end", "false", "for", "function", "if", "in"}
    | {"local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while"}
)


@dataclass(frozen=True, slots=True)
class Script:
    """One expanded script and its call contract."""

    name: str
    keys: tuple[str, ...]
    keys_rest: str | None
    argv: tuple[str, ...]
    argv_rest: str | None
    replies: frozenset[str]
    body: str
    """the file with its includes expanded"""
    source: str
    """generated header + body: what Redis runs"""

    def pack(
        self,
        keys: Mapping[str, str],
        args: Mapping[str, Any],
        rest_keys: Sequence[str] = (),
        rest_args: Sequence[Any] = (),
    ) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV lists from named arguments; exactly the declared names."""
        if tuple(keys) != self.keys or tuple(args) != self.argv:
            raise TypeError(
                f"script {self.name!r} takes KEYS {self.keys} and ARGV {self.argv}, "
                f"got {tuple(keys)} and {tuple(args)}"
            )
        if (rest_keys and not self.keys_rest) or (rest_args and not self.argv_rest):
            raise TypeError(f"script {self.name!r} takes no variadic arguments there")
        return [*keys.values(), *rest_keys], [*args.values(), *rest_args]


def _lua(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)  # a JSON string literal is a valid Lua one for these names


def _table(pairs: Mapping[str, object]) -> str:
    items = [
        f"{k} = {_lua(v)}" if _NAME.match(k) and k not in _RESERVED else f"[{_lua(k)}] = {_lua(v)}"
        for k, v in pairs.items()
    ]
    lines: list[str] = []
    for item in items:
        if lines and len(lines[-1]) + len(item) < 96:
            lines[-1] += f" {item},"
        else:
            lines.append(f"  {item},")
    return "{\n" + "\n".join(lines) + "\n}"


def _members(cls: type) -> dict[str, str]:
    return {k: v for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, str)}


# Names a script reads as TABLE.name (F.status, R.ok): the loader writes their
# values in place, so they cost nothing per call.
NAMESPACES: Final[Mapping[str, Mapping[str, str]]] = {
    "F": _members(keys.F),
    "K": _members(keys.K),
    "S": {s.value: s.value for s in Status},
    "EV": {e.value: e.value for e in LifecycleEvent},
    "R": _members(codec.R),
    "E": _members(codec.E),
    "MODE": _members(codec.MODE),
    "KIND": _members(codec.KIND),
    "REF": _members(codec.REF),
}


def constants() -> dict[str, str]:
    """Lua source of every generated constant but the namespaces, by name."""
    cells = {
        f"{state.value}|{event.value}": str(target)
        for (state, event), target in sorted(TRANSITIONS.items())
    }
    return {
        "SCHEMA_VERSION": _lua(keys.SCHEMA_VERSION),
        "KWARG_PREFIX": _lua(keys.KWARG_PREFIX),
        "T": _table(cells),
        "PREVIOUS": _lua(PREVIOUS),
        "PREFETCH_PAUSE_MS": _lua(keys.ms(keys.PREFETCH_PAUSE)),
        "TERMINAL": _table({s.value: True for s in sorted(TERMINAL_STATUSES)}),
        "RUN_EVENT": _table({e.value: True for e in RUN_EVENTS}),
    }


def _inline(body: str, script: str) -> str:
    """Each ``F.status``, ``R.ok``... replaced by its value: the names cost nothing per call.

    Comments are left as written; a name Python does not define is an error.
    """
    pattern = re.compile(rf"\b({'|'.join(NAMESPACES)})\.(\w+)\b")

    def value(match: re.Match[str]) -> str:
        table, attr = match.groups()
        if attr not in NAMESPACES[table]:
            raise RuntimeError(
                f"lua/{script}.lua uses {table}.{attr}, which Python does not define"
            )
        return _lua(NAMESPACES[table][attr])

    out = []
    for line in body.splitlines():
        code, sep, comment = line.partition("--")
        if re.search(rf"\b({'|'.join(NAMESPACES)})\[", code):
            raise RuntimeError(f"lua/{script}.lua indexes a name table: use TABLE.name")
        out.append(pattern.sub(value, code) + sep + comment)
    return "\n".join(out) + "\n"


def _read(rel: str) -> str:
    return _LUA.joinpath(f"{rel}.lua").read_text(encoding="utf-8")


def _code(source: str) -> str:
    """The source without comments (good enough for finding names)."""
    return re.sub(r"--.*$", "", source, flags=re.MULTILINE)


def _includes(source: str, seen: set[str]) -> str:
    def one(match: re.Match[str]) -> str:
        rel = match.group(1)
        if rel in seen:
            return f"-- (lib {rel} already included)"
        seen.add(rel)
        return f"-- >>> {rel}\n{_includes(_read(rel), seen).rstrip()}\n-- <<< {rel}"

    return _INCLUDE.sub(one, source)


def _shake(body: str, libs: set[str]) -> str:
    """Drop the library functions the script never calls (a call builds every
    closure it defines, so unused helpers would cost on every call)."""
    while True:
        for match in _FUNCTION.finditer(body):
            fn = match.group(1)
            rest = _code(body[: match.start()] + body[match.end() :])
            if fn in libs and not re.search(rf"\b{fn}\b", rest):
                body = body[: match.start()] + body[match.end() :]
                break
        else:
            return body


def _lint_ignores(body: str, libs: set[str]) -> str:
    """luacheck options for the library locals a script may leave unused."""
    names = sorted(libs & {n.strip() for m in _LOCAL.findall(body) for n in m.split(",")})
    return "".join(
        "-- luacheck: ignore " + " ".join(f"211/{n}" for n in names[i : i + 6]) + "\n"
        for i in range(0, len(names), 6)
    )


def _lib_names() -> set[str]:
    names: set[str] = set()
    for entry in _LUA.joinpath("lib").iterdir():
        if entry.name.endswith(".lua"):
            text = _code(entry.read_text(encoding="utf-8"))
            names |= {n.strip() for m in _LOCAL.findall(text) for n in m.split(",")}
    return names


def _names(spec: str) -> tuple[tuple[str, ...], str | None]:
    names = [n.strip() for n in spec.split(",") if n.strip()]
    rest = names.pop()[:-3] if names and names[-1].endswith("...") else None
    return tuple(names), rest


def expand(name: str) -> Script:
    """Read ``lua/<name>.lua`` and build the script Redis receives."""
    raw = _read(name)
    lead = "\n".join(takewhile(lambda line: line.startswith("--"), raw.splitlines()))
    header = dict(_HEADER.findall(lead))
    missing = {"KEYS", "ARGV", "REPLIES"} - header.keys()
    if missing:
        raise RuntimeError(f"lua/{name}.lua lacks its {', '.join(sorted(missing))} header")
    key_names, keys_rest = _names(header["KEYS"])
    arg_names, argv_rest = _names(header["ARGV"])
    replies, _ = _names(header["REPLIES"])
    libs = _lib_names()
    body = _shake(_includes(raw, set()), libs)
    used = _code(body)
    lines = [f"-- GENERATED from lua/{name}.lua by mageflow/_store/scripts.py: edit the .lua file"]
    for const, lua in constants().items():
        if re.search(rf"\b{const}\b", used):
            lines.append(f"local {const} = {lua}")
    for names, rest, table in ((key_names, keys_rest, "KEYS"), (arg_names, argv_rest, "ARGV")):
        lines += [f"local {n} = {table}[{i}]" for i, n in enumerate(names, 1)]
        if rest:
            lines.append(f"local {table}_REST = {len(names) + 1}")
    lines.append(_lint_ignores(body, libs).rstrip("\n"))
    return Script(
        name=name,
        keys=key_names,
        keys_rest=keys_rest,
        argv=arg_names,
        argv_rest=argv_rest,
        replies=frozenset(replies),
        body=body,
        source="\n".join(lines) + "\n" + _inline(body, name),
    )


def _script_names() -> Iterator[str]:
    for entry in _LUA.iterdir():
        if entry.is_file() and entry.name.endswith(".lua"):
            yield entry.name[: -len(".lua")]


def load() -> dict[str, Script]:
    return {name: expand(name) for name in sorted(_script_names())}


SCRIPTS: Final[Mapping[str, Script]] = load()
"""Every script by name (the file stem): what ``RedisStore`` registers and preloads."""
