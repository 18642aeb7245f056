"""The ``mageflow`` command: inspect and steer signatures stored in Redis.

Exit codes (also in docs/operations.md):

==  =====================================================================
0   success (``doctor``: no violations)
1   ``doctor`` found violations (after ``--repair``: some remain)
2   bad usage or bad input (unknown option, malformed value)
3   no signature under that key (with a hint when the prefix holds no data)
4   the action is refused in the signature's current status (nothing changed)
5   Redis is unreachable or holds data MageFlow cannot read (nothing changed)
6   the engine refused an operation (the state change in Redis was made)
==  =====================================================================
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from datetime import timedelta
from importlib.metadata import entry_points
from typing import Any, TextIO

from thirdmagic.errors import (
    ConfigurationError,
    EngineError,
    InvalidTransitionError,
    MageflowError,
    MageflowValidationError,
    SignatureLockedError,
    SignatureNotFoundError,
    StoreError,
)
from thirdmagic.status import LifecycleEvent, SignatureStatus

from mageflow.engine import (
    CancelRequest,
    DescribeRequest,
    DispatchRequest,
    DispatchResult,
    TaskDescription,
    TaskManager,
)

__all__ = ["EXIT_CODES", "main"]

EXIT_OK = 0
EXIT_VIOLATIONS = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_REFUSED = 4
EXIT_STORE = 5
EXIT_ENGINE = 6

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_VIOLATIONS: "doctor found violations",
    EXIT_USAGE: "bad usage or input",
    EXIT_NOT_FOUND: "no such signature",
    EXIT_REFUSED: "refused in the current status",
    EXIT_STORE: "redis unreachable or unreadable data",
    EXIT_ENGINE: "engine refused",
}

_MANAGER_GROUP = "mageflow.managers"
_STATUS_MARK = {
    "pending": "○",
    "active": "▶",
    "suspended": "‖",
    "interrupted": "⏸",
    "done": "✔",
    "failed": "✘",
    "canceled": "⊘",
    "missing": "?",
}


class _Deferred(TaskManager):
    """Stands in for an engine when the CLI has none.

    A dispatch is left as a claim in the pending index, which the workers'
    recovery loop sends; a run that should be cancelled cannot be, so the
    CLI says so (its outcome is discarded when it ends: the status is final).
    """

    def __init__(self, out: TextIO) -> None:
        self.out = out

    async def dispatch(self, request: DispatchRequest) -> DispatchResult:
        print(
            f"note: no engine configured; the run of {request.signature_key} is claimed and "
            "will be sent by a worker's recovery loop",
            file=self.out,
        )
        return DispatchResult(run_id=None)

    async def cancel(self, request: CancelRequest) -> None:
        print(
            f"warning: no engine configured; run {request.run_id} was not cancelled in the "
            "engine (its outcome will be discarded when it ends)",
            file=self.out,
        )

    def describe(self, request: DescribeRequest) -> TaskDescription | None:
        return None


def _manager(engine: str, err: TextIO) -> Any:
    if engine == "none":
        return _Deferred(err)
    found = {ep.name: ep for ep in entry_points(group=_MANAGER_GROUP)}
    if engine != "auto":
        if engine not in found:
            raise ConfigurationError(
                f"--engine: no engine adapter named {engine!r} is installed "
                f"(installed: {', '.join(sorted(found)) or 'none'})"
            )
        return found[engine].load()()
    for ep in found.values():
        try:
            return ep.load()()
        except Exception as exc:  # not configured in this environment
            print(f"note: engine {ep.name!r} not usable here ({exc}); using none", file=err)
    return _Deferred(err)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--redis-url", default=None, help="Redis URL (default: $REDIS_URL, else redis://localhost)"
    )
    common.add_argument("--prefix", default=None, help="key prefix (default: mageflow:)")
    reading = argparse.ArgumentParser(add_help=False)
    reading.add_argument("--json", action="store_true", help="machine-readable output")
    acting = argparse.ArgumentParser(add_help=False)
    acting.add_argument(
        "--engine",
        default="auto",
        help="engine adapter for run dispatch/cancel: auto (default), none, or a name",
    )

    parser = argparse.ArgumentParser(
        prog="mageflow",
        description="Inspect and steer MageFlow signatures, chains and swarms.",
        parents=[common],
        epilog="Exit codes: " + "; ".join(f"{code} {what}" for code, what in EXIT_CODES.items()),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ls = sub.add_parser(
        "ls", parents=[common, reading], help="list signatures (default: root flows)"
    )
    ls.add_argument("--status", choices=[s.value for s in SignatureStatus])
    ls.add_argument("--task", help="task name")
    ls.add_argument(
        "--identifier", action="append", default=[], metavar="NAME=VALUE", help="repeatable"
    )
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--all", action="store_true", help="not only root flows")

    for name, what in (
        ("show", "everything stored about one signature"),
        ("tree", "a chain/swarm with its members and callbacks"),
    ):
        p = sub.add_parser(name, parents=[common, reading], help=what)
        p.add_argument("key")
    watch = sub.add_parser("watch", parents=[common, reading], help="follow a flow live")
    watch.add_argument("key")
    watch.add_argument(
        "--interval",
        type=float,
        default=5.0,
        help="re-read at least every N seconds (status changes are pushed at once)",
    )
    watch.add_argument("--timeout", type=float, default=None, help="give up after N seconds")

    for name in ("suspend", "resume", "interrupt", "retry"):
        p = sub.add_parser(name, parents=[common, acting], help=f"{name} a signature")
        p.add_argument("key")
    cancel = sub.add_parser("cancel", parents=[common, acting], help="cancel for good")
    cancel.add_argument("key")
    cancel.add_argument(
        "--error-callbacks", action="store_true", help="fire the error callbacks once"
    )

    doctor = sub.add_parser("doctor", parents=[common, reading], help="check invariants")
    doctor.add_argument("--repair", action="store_true", help="fix what is provably safe")
    doctor.add_argument("--stuck-after", type=float, default=30.0, help="minutes (default 30)")

    dash = sub.add_parser("dashboard", parents=[common], help="serve the web dashboard")
    dash.add_argument("--host", default="127.0.0.1")
    dash.add_argument("--port", type=int, default=8765)
    dash.add_argument(
        "--token", default=None, help="action token (default: $MAGEFLOW_TOKEN or random)"
    )
    dash.add_argument("--read-only", action="store_true")
    dash.add_argument(
        "--hatchet-url",
        default=None,
        help="link to a Hatchet run: a template with {run_id}, or a base URL + /runs/<id>",
    )
    dash.add_argument("--engine", default="auto")
    dash.add_argument("--flow", default=None, metavar="KEY", help="also print a link to this flow")
    return parser


class _Out:
    def __init__(self, out: TextIO, as_json: bool, err: TextIO) -> None:
        self.out = out
        self.as_json = as_json
        self.err = err

    def line(self, text: str = "") -> None:
        print(text, file=self.out)

    def json(self, value: Any) -> None:
        print(json.dumps(value, indent=2, default=str), file=self.out)


def _mark(status: str) -> str:
    return f"{_STATUS_MARK.get(status, ' ')} {status}"


def _tree_lines(node: dict[str, Any], prefix: str = "", label: str = "") -> list[str]:
    progress = node.get("progress")
    counters = ""
    if progress:
        counters = (
            f" [{progress['done']}/{progress['admitted']} done, {progress['running']} running, "
            f"{progress['queued']} queued, {progress['failed']} failed]"
        )
    error = f" — {node['error']['type']}: {node['error']['message']}" if node.get("error") else ""
    lines = [
        f"{prefix}{label}{node.get('kind', '?')} {node['key']} ({node.get('task_name', '?')}) "
        f"{_mark(node.get('status', '?'))}{counters}{error}"
    ]
    children: list[tuple[str, dict[str, Any]]] = [("", m) for m in node.get("members", [])]
    children += [("on success: ", c) for c in node.get("success_callbacks", [])]
    children += [("on error: ", c) for c in node.get("error_callbacks", [])]
    child_prefix = prefix.replace("├─ ", "│  ").replace("└─ ", "   ")
    for i, (lab, child) in enumerate(children):
        last = i == len(children) - 1
        lines += _tree_lines(child, child_prefix + ("└─ " if last else "├─ "), lab)
    if node.get("more_members"):
        lines.append(f"{child_prefix}   … {node['more_members']} more members")
    return lines


async def _no_data_hint(runtime: Any) -> str:
    store = runtime.store
    exists = await store._guard(
        lambda: store.client.exists(store.keys.roots, store.keys.pending), key=None
    )
    if not exists:
        return (
            f" (no MageFlow data at all under prefix {store.keys.prefix!r}: "
            "wrong --prefix or --redis-url?)"
        )
    return ""


async def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import redis.asyncio as aioredis

    from mageflow import _doctor, _inspect, _query
    from mageflow._runtime import MageflowRuntime
    from mageflow._store.redis_store import RedisStore
    from mageflow.config import MageflowConfig

    url = args.redis_url or os.environ.get("REDIS_URL") or "redis://localhost:6379/0"
    try:
        config = MageflowConfig(key_prefix=args.prefix or "mageflow:")
    except ValueError as exc:
        raise MageflowValidationError(f"--prefix: {exc}", field="prefix") from exc
    try:
        client = aioredis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=3, socket_timeout=10
        )
    except ValueError as exc:
        raise MageflowValidationError(f"--redis-url: {exc}", field="redis_url") from exc
    needs_engine = args.command in (
        "suspend",
        "resume",
        "interrupt",
        "cancel",
        "retry",
        "dashboard",
    )
    manager = _manager(args.engine, err) if needs_engine else None
    # not installed as the process-wide default: the CLI can run inside a host
    # process (tests, the dashboard) without replacing its runtime
    runtime = MageflowRuntime(RedisStore(client, config), manager)
    o = _Out(out, getattr(args, "json", False), err)
    try:
        await runtime.store._guard(client.ping, key=None)
        try:
            return await _command(args, runtime, o, _inspect, _query, _doctor)
        except SignatureNotFoundError as exc:
            raise SignatureNotFoundError(exc.key, str(exc) + await _no_data_hint(runtime)) from exc
    finally:
        await runtime.results.close()
        await client.aclose()


async def _command(
    args: argparse.Namespace, runtime: Any, o: _Out, _inspect: Any, _query: Any, _doctor: Any
) -> int:
    cmd = args.command
    if cmd == "ls":
        sigs = await _query.list_signatures(
            runtime.store,
            status=args.status,
            task=args.task,
            identifiers=args.identifier or None,
            roots=not args.all and not (args.status or args.task or args.identifier),
            limit=args.limit,
        )
        rows = [
            {
                "key": s.key,
                "kind": getattr(s, "kind", "task"),
                "task_name": s.task_name,
                "status": s.status.value,
                "created": s.creation_time.isoformat(),
                "task_identifiers": s.task_identifiers,
            }
            for s in sigs
        ]
        if o.as_json:
            o.json(rows)
        else:
            for r in rows:
                ids = " ".join(f"{k}={v}" for k, v in r["task_identifiers"].items())
                o.line(
                    f"{r['created'][:19]}  {_mark(r['status']):<14} {r['kind']:<6} "
                    f"{r['task_name']:<24} {r['key']}  {ids}".rstrip()
                )
            if not rows:
                o.line("(no signatures)")
        return EXIT_OK
    if cmd == "show":
        info = await _inspect.describe(runtime, args.key)
        if o.as_json:
            o.json(info)
        else:
            for name, value in info.items():
                text = value if isinstance(value, str) else json.dumps(value, default=str)
                if name == "error" and value:
                    o.line(f"{'error':<18} {value['type']}: {value['message']}")
                    if value.get("traceback"):
                        o.line("  " + value["traceback"].rstrip().replace("\n", "\n  "))
                    continue
                o.line(f"{name:<18} {text}")
        return EXIT_OK
    if cmd == "tree":
        tree = await _inspect.flow_tree(runtime, args.key)
        if o.as_json:
            o.json(tree)
        else:
            for line in _tree_lines(tree):
                o.line(line)
        return EXIT_OK
    if cmd == "watch":
        return await _watch(args, runtime, o, _inspect)
    if cmd in ("suspend", "resume", "interrupt", "retry", "cancel"):
        if cmd == "cancel":
            status = await runtime.cancel(args.key, error_callbacks=args.error_callbacks)
        elif cmd == "retry":
            status = await runtime.retry(args.key)
        else:
            status = await runtime.apply(args.key, LifecycleEvent(cmd))
        o.line(f"{args.key}: {status.status.value}")
        return EXIT_OK
    if cmd == "doctor":

        def progress(n: int) -> None:
            print(f"doctor: {n} signatures checked", file=o.err, flush=True)

        findings = await _doctor.run_doctor(
            runtime,
            repair=args.repair,
            stuck_after=timedelta(minutes=args.stuck_after),
            progress=progress,
        )
        remaining = [f for f in findings if not f.repaired and f.check != "stuck"]
        if o.as_json:
            o.json([f.as_dict() for f in findings])
        else:
            for f in findings:
                state = (
                    "repaired" if f.repaired else ("note" if f.check == "stuck" else "VIOLATION")
                )
                o.line(f"{state:<9} {f.check:<11} {f.key}  {f.detail}")
            o.line(
                f"{len(remaining)} violation(s), "
                f"{sum(f.repaired for f in findings)} repaired, "
                f"{sum(f.check == 'stuck' for f in findings)} stuck candidate(s)"
            )
        return EXIT_VIOLATIONS if remaining else EXIT_OK
    if cmd == "dashboard":
        return await _dashboard(args, runtime, o)
    raise MageflowValidationError(f"unknown command {cmd!r}")


async def _watch(args: argparse.Namespace, runtime: Any, o: _Out, _inspect: Any) -> int:
    if args.interval <= 0:
        raise MageflowValidationError("--interval: expected a positive number", field="interval")
    last = None

    async def follow() -> int:
        nonlocal last
        trees = _inspect.watch_tree(runtime, args.key, interval=args.interval)
        async with contextlib.aclosing(trees):
            async for tree in trees:
                if tree != last:
                    if o.as_json:
                        print(json.dumps(tree, default=str), file=o.out, flush=True)
                    else:
                        o.line(f"--- {time.strftime('%H:%M:%S')}")
                        for line in _tree_lines(tree):
                            o.line(line)
                        o.out.flush()
                    last = tree
                if tree.get("terminal"):
                    return EXIT_OK
        return EXIT_OK

    if args.timeout is None:
        return await follow()
    try:
        async with asyncio.timeout(args.timeout):
            return await follow()
    except TimeoutError:
        return EXIT_OK


async def _dashboard(args: argparse.Namespace, runtime: Any, o: _Out) -> int:
    try:
        from mageflow_dashboard.server import serve  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise ConfigurationError(
            "the dashboard is not installed: build it from the MageFlow repository "
            "(uv build --all-packages) and pip install dist/mageflow_dashboard-*.whl; "
            "it is not on PyPI"
        ) from exc
    await serve(
        runtime,
        host=args.host,
        port=args.port,
        token=args.token or os.environ.get("MAGEFLOW_TOKEN"),
        read_only=args.read_only,
        hatchet_url=args.hatchet_url,
        out=o.out,
        flow=args.flow,
    )
    return EXIT_OK


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, SignatureNotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, (InvalidTransitionError, SignatureLockedError)):
        return EXIT_REFUSED
    if isinstance(exc, StoreError):
        return EXIT_STORE
    if isinstance(exc, EngineError):
        return EXIT_ENGINE
    return EXIT_USAGE


def main(
    argv: Sequence[str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    runner: Callable[[Coroutine[Any, Any, int]], int] = asyncio.run,
) -> int:
    """Entry point of the ``mageflow`` console script; returns the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        return runner(_run(args, out, err))
    except MageflowError as exc:
        print(f"error: {exc}", file=err)
        return _exit_code(exc)
    except KeyboardInterrupt:
        return 130


def console() -> None:
    sys.exit(main())
