"""The ``mageflow`` CLI against real Redis: every command, bad input, exit codes."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from typing import Any

import mageflow
import pytest
from mageflow import MageflowRuntime
from mageflow._inspect import watch_tree
from mageflow.cli import main
from mageflow.inmemory import InMemoryTaskManager, NonRetryableError
from pydantic import BaseModel

from tests.integration._helpers import Raw, eventually

pytestmark = pytest.mark.usefixtures("runtime")


class Num(BaseModel):
    n: int


@pytest.fixture
def gate(manager: InMemoryTaskManager) -> asyncio.Event:
    g = asyncio.Event()

    @manager.task("work", input_validator=Num)
    async def work(msg: Num) -> int:
        await g.wait()
        return msg.n

    @manager.task("fail", input_validator=Num)
    async def fail(msg: Num) -> int:
        raise NonRetryableError(f"no {msg.n}")

    return g


class Cli:
    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix

    async def __call__(self, *argv: str, prefix: str | None = None) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        args = [*argv, "--redis-url", self.url, "--prefix", prefix or self.prefix]
        code = await asyncio.to_thread(main, args, out, err)
        return code, out.getvalue(), err.getvalue()

    async def json(self, *argv: str) -> Any:
        code, out, err = await self(*argv, "--json")
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def cli(redis_url: str, key_prefix: str) -> Cli:
    return Cli(redis_url, key_prefix)


async def test_ls_filters_and_json(cli: Cli, gate: asyncio.Event) -> None:
    a = await mageflow.asign("work", task_identifiers={"order": 1042})
    await asyncio.sleep(0.005)  # distinct creation times (ms): the order is by time
    b = await mageflow.asign("work", task_identifiers={"order": 7})
    await asyncio.sleep(0.005)
    ch = await mageflow.achain(["work", "work"])
    rows = await cli.json("ls")
    assert [r["key"] for r in rows] == [ch.key, b.key, a.key]  # root flows, newest first
    rows = await cli.json("ls", "--identifier", "order=1042")
    assert [r["key"] for r in rows] == [a.key]
    rows = await cli.json("ls", "--task", "work", "--limit", "1")
    assert len(rows) == 1
    rows = await cli.json("ls", "--status", "pending", "--all", "--limit", "100")
    assert len(rows) == 5  # two chain steps too
    code, out, _ = await cli("ls")
    assert code == 0 and a.key in out and "order=1042" in out and "○ pending" in out


async def test_show_prints_input_result_error_and_run_id(cli: Cli, gate: asyncio.Event) -> None:
    sig = await mageflow.asign("fail", task_identifiers={"o": 1})
    with pytest.raises(mageflow.SignatureFailedError):
        await sig.aio_run(Num(n=3), timeout=5)
    info = await cli.json("show", sig.key)
    assert info["status"] == "failed"
    assert info["input"] == {"n": 3}
    assert info["error"]["message"] == "no 3"
    assert info["run_id"]
    code, out, _ = await cli("show", sig.key)
    assert code == 0 and "no 3" in out and "Traceback" in out
    gate.set()
    ok = await mageflow.asign("work")
    await ok.aio_run(Num(n=5), timeout=5)
    assert (await cli.json("show", ok.key))["result"] == 5


async def test_tree_of_a_swarm_with_counters(cli: Cli, gate: asyncio.Event) -> None:
    cb = await mageflow.asign("work")
    sw = await mageflow.aswarm(
        config=mageflow.SwarmConfig(max_concurrency=1), success_callbacks=[cb]
    )
    members = await sw.aio_run_tasks_in_swarm(["work", "work"], [Num(n=1), Num(n=2)])
    await sw.close_swarm()
    await sw.aio_run_no_wait({})
    tree = await cli.json("tree", sw.key)
    assert tree["progress"]["running"] == 1 and tree["progress"]["queued"] == 1
    assert [m["key"] for m in tree["members"]] == members
    assert tree["success_callbacks"][0]["key"] == cb.key
    code, out, _ = await cli("tree", sw.key)
    assert code == 0
    assert "[0/2 done, 1 running, 1 queued, 0 failed]" in out
    assert "on success: task" in out
    gate.set()
    await sw.aio_result(timeout=5)


async def test_watch_follows_until_the_flow_ends(cli: Cli, gate: asyncio.Event) -> None:
    sig = await mageflow.asign("work")
    await sig.aio_run_no_wait(Num(n=1))
    # a re-read every 60 s at the latest: the end must arrive by notification
    task = asyncio.create_task(cli("watch", sig.key, "--interval", "60", "--json"))
    await asyncio.sleep(0.3)
    gate.set()
    code, out, _ = await asyncio.wait_for(task, 10)
    frames = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert frames[0]["status"] in ("pending", "active") and frames[-1]["status"] == "done"


async def test_watch_ends_at_timeout_and_rejects_a_bad_interval(cli: Cli) -> None:
    sig = await mageflow.asign("work")
    started = time.monotonic()
    code, out, _ = await cli("watch", sig.key, "--interval", "60", "--timeout", "0.5", "--json")
    assert code == 0 and time.monotonic() - started < 5
    assert [json.loads(line)["status"] for line in out.splitlines()] == ["pending"]
    code, _, err = await cli("watch", sig.key, "--interval", "0")
    assert code != 0 and "--interval" in err


async def test_watch_tree_is_woken_by_status_changes_of_every_shown_node(
    runtime: MageflowRuntime,
) -> None:
    member = await mageflow.asign("work")
    ok = await mageflow.asign("work")
    sw = await mageflow.aswarm([member], success_callbacks=[ok])
    trees = watch_tree(runtime, sw.key, interval=60)
    async with contextlib.aclosing(trees):
        assert (await anext(trees))["status"] == "pending"
        for key, want in ((member.key, "suspended"), (ok.key, "suspended"), (sw.key, "suspended")):
            started = time.monotonic()
            await mageflow.pause(key)
            tree = await asyncio.wait_for(anext(trees), 5)
            assert time.monotonic() - started < 5
            assert _find(tree, key)["status"] == want


def _find(node: dict[str, Any], key: str) -> dict[str, Any]:
    if node["key"] == key:
        return node
    for field in ("members", "success_callbacks", "error_callbacks"):
        for child in node.get(field, ()):
            with contextlib.suppress(KeyError):
                return _find(child, key)
    raise KeyError(key)


async def test_actions_change_the_status(cli: Cli, gate: asyncio.Event, raw: Raw) -> None:
    sig = await mageflow.asign("work")
    for cmd, want in (
        ("suspend", "suspended"),
        ("resume", "pending"),
        ("interrupt", "interrupted"),
    ):
        code, out, err = await cli(cmd, sig.key, "--engine", "none")
        assert code == 0, err
        assert out.strip() == f"{sig.key}: {want}"
        assert await raw.status(sig.key) == want
    code, _, err = await cli("cancel", sig.key, "--engine", "none")
    assert code == 0, err
    assert await raw.status(sig.key) == "canceled"
    # a refused action: exit 4, nothing changed
    before = await raw.hash(sig.key)
    code, _, err = await cli("resume", sig.key, "--engine", "none")
    assert code == 4 and "canceled" in err
    assert await raw.hash(sig.key) == before


async def test_cancel_a_running_task_without_engine_warns(
    cli: Cli, gate: asyncio.Event, raw: Raw
) -> None:
    sig = await mageflow.asign("work")
    await sig.aio_run_no_wait(Num(n=1))
    await eventually(lambda: _active(raw, sig.key), what="running")
    code, _, err = await cli("cancel", sig.key, "--engine", "none")
    assert code == 0 and "was not cancelled in the engine" in err
    gate.set()
    with pytest.raises(mageflow.SignatureCanceledError):
        await sig.aio_result(timeout=5)


async def _active(raw: Raw, key: str) -> bool:
    return await raw.status(key) == "active"


async def test_retry_from_the_cli_leaves_a_claim_for_recovery(
    cli: Cli, gate: asyncio.Event, raw: Raw, runtime: MageflowRuntime
) -> None:
    sig = await mageflow.asign("fail")
    with pytest.raises(mageflow.SignatureFailedError):
        await sig.aio_run(Num(n=1), timeout=5)
    code, out, err = await cli("retry", sig.key, "--engine", "none")
    assert code == 0, err
    assert out.strip() == f"{sig.key}: pending" and "recovery loop" in err
    # the claim is in the pending index: a worker's recover() sends it
    assert await runtime.recover(older_than=__import__("datetime").timedelta(0)) == 1
    with pytest.raises(mageflow.SignatureFailedError):
        await sig.aio_result(timeout=5)


async def test_unknown_key_wrong_prefix_and_bad_input(
    cli: Cli, gate: asyncio.Event, raw: Raw
) -> None:
    await mageflow.asign("work")
    before = await raw.snapshot(indexes=True)
    code, _, err = await cli("show", "no-such-key")
    assert code == 3 and "no-such-key" in err and "wrong --prefix" not in err
    code, _, err = await cli("show", "no-such-key", prefix="other-prefix:")
    assert code == 3 and "wrong --prefix" in err
    code, _, err = await cli("cancel", "no-such-key", "--engine", "none")
    assert code == 3
    code, _, err = await cli("ls", "--identifier", "novalue")
    assert code == 2 and "NAME=VALUE" in err
    code, _, err = await cli("ls", "--status", "bogus")
    assert code == 2
    code, _, err = await cli("ls", prefix="bad sig:prefix")
    assert code == 2 and "--prefix" in err
    code, _, err = await cli("cancel", "x", "--engine", "nosuchengine")
    assert code == 2 and "nosuchengine" in err
    assert await raw.snapshot(indexes=True) == before


async def test_redis_down_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out, err = io.StringIO(), io.StringIO()
    argv = ["cancel", "k", "--engine", "none", "--redis-url", f"redis://127.0.0.1:{port}/0"]
    code = await asyncio.to_thread(main, argv, out, err)
    assert code == 5
    assert "unreachable" in err.getvalue()


async def test_doctor_clean_then_violations_then_repair(
    cli: Cli, gate: asyncio.Event, raw: Raw, runtime: MageflowRuntime
) -> None:
    sw = await mageflow.aswarm(config=mageflow.SwarmConfig(max_concurrency=1))
    await sw.aio_run_tasks_in_swarm(["work", "work"], [Num(n=1), Num(n=2)])
    await sw.close_swarm()
    await sw.aio_run_no_wait({})
    code, out, _ = await cli("doctor")
    assert code == 0, out
    assert "0 violation(s)" in out
    # break invariants behind the scripts' back
    await raw.client.hset(raw.sig_key(sw.key), "run", 5)
    lone = await mageflow.asign("work")
    await raw.client.hset(raw.sig_key(lone.key), "s", "active")  # the index still says pending
    findings = await cli("doctor", "--json")
    assert findings[0] == 1
    found = {(f["check"], f["key"]) for f in json.loads(findings[1])}
    assert ("counters", sw.key) in found and ("concurrency", sw.key) in found
    assert ("index", lone.key) in found
    code, out, _ = await cli("doctor", "--repair")
    assert code == 1  # the counters are not repaired: not provably safe
    assert f"repaired  index       {lone.key}" in out
    assert int(await raw.client.hget(raw.sig_key(sw.key), "run")) == 5
    ranked = await raw.client.zscore(runtime.store.keys.by_status("active"), lone.key)
    assert ranked is not None
    await raw.client.hset(raw.sig_key(sw.key), "run", 1)
    gate.set()
    await sw.aio_result(timeout=5)


async def test_console_script_is_installed(redis_url: str, key_prefix: str) -> None:
    exe = shutil.which("mageflow", path=os.path.dirname(sys.executable))
    assert exe is not None
    done = await asyncio.to_thread(
        subprocess.run,
        [exe, "ls", "--json", "--redis-url", redis_url, "--prefix", key_prefix],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    done = await asyncio.to_thread(
        subprocess.run, [exe, "frobnicate"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
