"""The Lua scripts and their callers agree: argument names, reply words, constant names."""

from __future__ import annotations

import ast
import importlib.util
import re
import shutil
from importlib import resources
from pathlib import Path

import pytest
from mageflow._store import codec, keys, redis_store, scripts
from mageflow._store.scripts import SCRIPTS, Script

STORE_SOURCE = Path(redis_store.__file__)
LUA_DIR = resources.files("mageflow._store").joinpath("lua")
LUACHECK_TOOL = Path(__file__).resolve().parents[2] / "tools" / "luacheck.py"

# Generated table -> the Python names it is built from
TABLES: dict[str, set[str]] = {
    "F": {n for n in vars(keys.F) if not n.startswith("_")},
    "K": {n for n in vars(keys.K) if not n.startswith("_")},
    "R": {n for n in vars(codec.R) if not n.startswith("_")},
    "E": {n for n in vars(codec.E) if not n.startswith("_")},
    "MODE": {n for n in vars(codec.MODE) if not n.startswith("_")},
    "KIND": {n for n in vars(codec.KIND) if not n.startswith("_")},
    "S": {s.value for s in scripts.Status},
    "EV": {e.value for e in scripts.LifecycleEvent},
}


def _code(source: str) -> str:
    return re.sub(r"--.*$", "", source, flags=re.MULTILINE)


def _calls() -> list[ast.Call]:
    tree = ast.parse(STORE_SOURCE.read_text(encoding="utf-8"))
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("_call", "_queue")  # _queue: the same, in a pipeline
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "self"
    ]


def _returned_dict_keys(method: str) -> list[str]:
    """Keys of the dict literal a RedisStore method returns (the shared ARGV)."""
    tree = ast.parse(STORE_SOURCE.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == method:
            for ret in ast.walk(node):
                if isinstance(ret, ast.Return) and isinstance(ret.value, ast.Dict):
                    return [ast.literal_eval(k) for k in ret.value.keys if k is not None]
    raise AssertionError(f"RedisStore.{method} returns no dict literal")


def _dict_names(node: ast.expr) -> list[str]:
    assert isinstance(node, ast.Dict), f"line {node.lineno}: pass KEYS/ARGV as a dict literal"
    names: list[str] = []
    for k, v in zip(node.keys, node.values, strict=True):
        if k is None:  # **self._container_args(...)
            assert isinstance(v, ast.Call) and isinstance(v.func, ast.Attribute)
            names += _returned_dict_keys(v.func.attr)
        else:
            names.append(ast.literal_eval(k))
    return names


def test_every_script_file_is_registered() -> None:
    files = {p.name[:-4] for p in LUA_DIR.iterdir() if p.name.endswith(".lua")}
    assert set(SCRIPTS) == files
    assert set(SCRIPTS) >= {"create", "dispatch", "begin", "finish", "transition", "advance"}


def test_every_caller_passes_exactly_the_declared_arguments() -> None:
    called: set[str] = set()
    for call in _calls():
        # the script name: the first string literal (_queue takes the pipeline first)
        name = next(
            a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
        )
        script = SCRIPTS[name]
        called.add(name)
        kw = {k.arg: k.value for k in call.keywords}
        where = f"redis_store.py:{call.lineno} ({name})"
        assert tuple(_dict_names(kw["keys"])) == script.keys, where
        assert tuple(_dict_names(kw["args"])) == script.argv, where
        assert ("rest_keys" in kw) == (script.keys_rest is not None), where
        assert ("rest_args" in kw) == (script.argv_rest is not None), where
    assert called == set(SCRIPTS), "every script has a caller, every caller a script"


def test_pack_refuses_other_names() -> None:
    script = SCRIPTS["unlock"]
    assert script.pack({"lock_key": "l"}, {"token": "t"}) == (["l"], ["t"])
    with pytest.raises(TypeError, match="unlock"):
        script.pack({"lock_key": "l"}, {"tok": "t"})
    with pytest.raises(TypeError, match="variadic"):
        script.pack({"lock_key": "l"}, {"token": "t"}, rest_args=["x"])


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_reply_words_are_results_or_mapped_errors(name: str) -> None:
    script = SCRIPTS[name]
    code = _code(script.body)
    returned = set(re.findall(r"\{R\.(\w+)", code))
    assert returned, "a script replies with a reply word"
    assert script.replies <= TABLES["R"]
    unmapped = returned - script.replies - set(codec.ERRORS)
    assert not unmapped, f"{name} replies {unmapped}: neither a result nor in codec.ERRORS"


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_every_generated_name_used_exists(name: str) -> None:
    """A misspelt F.staus would be nil in Lua, silently."""
    code = _code(SCRIPTS[name].body)
    for table, known in TABLES.items():
        for attr in re.findall(rf"\b{table}\.(\w+)", code):
            assert attr in known, f"{name}: {table}.{attr} is not defined in Python"


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_no_field_or_key_part_spelt_by_hand(name: str) -> None:
    """Hash fields and key parts come from the generated F and K tables only."""
    body = _code(SCRIPTS[name].body)
    literals = set(re.findall(r"'([^']*)'", body)) | set(re.findall(r'"([^"]*)"', body))
    # TYPE's status reply is a table {ok = 'hash'}: not the field F.succeeded
    literals.discard("ok")
    by_hand = {
        v
        for k, v in (*vars(keys.F).items(), *vars(keys.K).items())
        if k in TABLES["F"] | TABLES["K"]
    }
    spelt = literals & by_hand
    assert not spelt, f"{name} spells {spelt} by hand"


def test_header_holds_python_constants() -> None:
    source = SCRIPTS["transition"].source
    assert f'local SCHEMA_VERSION = "{keys.SCHEMA_VERSION}"' in source
    assert '["pending|suspend"] = "suspended"' in source
    assert (
        "local TERMINAL = {\n  canceled = true, done = true, failed = true, skipped = true,\n}"
        in source
    )
    assert (
        "local sig_key = KEYS[1]\nlocal lock_key = KEYS[2]\nlocal pending_key = KEYS[3]\n" in source
    )


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_names_are_written_in_place(name: str) -> None:
    code = _code(SCRIPTS[name].source)
    left = re.findall(rf"\b(?:{'|'.join(TABLES)})\.\w+", code)
    assert not left, f"{name}: {left} not replaced by their values"


def test_an_undefined_name_fails_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "-- KEYS: k\n-- ARGV: a\n-- REPLIES: ok\nreturn {R.ok, F.stauts}\n"
    monkeypatch.setattr(scripts, "_read", lambda rel: text)
    with pytest.raises(RuntimeError, match=r"F\.stauts"):
        scripts.expand("x")


def test_a_script_without_its_header_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scripts, "_read", lambda rel: "-- KEYS: a\nreturn 1\n")
    with pytest.raises(RuntimeError, match="ARGV, REPLIES"):
        scripts.expand("x")


def test_includes_are_expanded_once() -> None:
    source = SCRIPTS["finish"].source
    assert "-- @include" not in source
    assert source.count("local function kind_of(") == 1
    assert source.count("local function bubble(") == 1
    assert isinstance(SCRIPTS["finish"], Script)


def test_luacheck_is_clean() -> None:
    """The expanded scripts pass luacheck (skipped where luacheck is not installed)."""
    if shutil.which("luacheck") is None:
        pytest.skip("luacheck is not installed (Debian: apt-get install lua-check)")
    spec = importlib.util.spec_from_file_location("luacheck_tool", LUACHECK_TOOL)
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    done = tool.lint()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 warnings / 0 errors" in done.stdout


# -- one transition table --------------------------------------------------------------

# The events each script passes to step(), the one reader of the table T
# ("event" is the caller's, which TRANSITION refuses for run events)
EVENTS_BY_SCRIPT = {
    "advance": {"EV.start", "outcome_event(result)"},
    # a swarm member's run arriving after its swarm was canceled cancels it
    "begin": {"EV.start", "EV.cancel"},
    "dispatch": {"EV.start"},
    "finish": {"succeed and EV.succeed or EV.fail", "outcome_event(result)"},
    "swarm_close": {"outcome_event(result)"},
    # the reconciler: fail (a pending claim starts, then fails), or cancel
    "settle": {"EV.cancel", "EV.fail", "EV.start", "outcome_event(result)"},
    "transition": {"event", "EV.start", "EV.retry"},
}


_STEP_FN = re.compile(r"local function step\(.*?\nend\n", re.DOTALL)


def _without_step(source: str) -> str:
    return _STEP_FN.sub("", _code(source))


def _status_writes(code: str) -> list[str]:
    """The expression of every status a script writes (HSET ... F.status, <expr>)."""
    assert "HMSET" not in code and "HSETNX" not in code
    hset_lines = [line for line in code.splitlines() if "'HSET'" in line]
    writes = re.findall(r"'HSET',[^\n]*?F\.status, (step\(.*?\)\)?|\w+)", code)
    assert len(writes) == sum(line.count("F.status, ") for line in hset_lines)
    return writes


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_every_status_written_comes_from_the_table(name: str) -> None:
    code = _without_step(SCRIPTS[name].body)
    for expr in _status_writes(code):
        if expr.startswith("step("):
            continue
        assigned = re.findall(rf"(?:^|[^\w.]){expr} = ([^\n]+)", code)
        assert assigned, f"{name}: {expr} is written as a status but never assigned"
        for rhs in assigned:
            assert rhs.startswith("step("), f"{name}: status {expr} = {rhs} is not from step()"


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_the_events_each_script_applies(name: str) -> None:
    code = _without_step(SCRIPTS[name].body)
    body = _without_step(SCRIPTS[name].body.split("-- <<< lib/containers")[-1])
    events = set(re.findall(r"\bstep\([^,]+, ((?:[^()]|\([^()]*\))+?)(?:, [^)]+)?\)", body))
    if "bubble(" in code or "conclude(" in code:
        events.add("outcome_event(result)")
    assert events == EVENTS_BY_SCRIPT.get(name, set())


def test_step_reads_the_generated_table_only() -> None:
    prelude = _code(SCRIPTS["begin"].body)
    (fn,) = re.findall(r"local function step\(.*?\nend", prelude, flags=re.DOTALL)
    assert "local cell = T[s .. '|' .. ev]" in fn
    assert "PREVIOUS" in fn
    # terminal() is the generated set
    assert "TERMINAL[s] == true" in prelude


def test_transition_refuses_run_events() -> None:
    assert {e.value for e in scripts.RUN_EVENTS} == {"start", "succeed", "fail", "skip"}
    code = _code(SCRIPTS["transition"].body)
    refuse = code.index("if RUN_EVENT[event] then return {R.invalid")
    assert refuse < code.index("step(s, event")
