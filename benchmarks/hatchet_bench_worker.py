"""Worker subprocess of ``hatchet_bench.py``: serves the tasks of ``hatchet_bench_app``.

Env: the Hatchet client variables, ``REDIS_URL`` and ``MFBENCH_PREFIX``.

MageFlow's Redis client here uses a counting connection (``_common.CountingConnection``
plus a per-command tally, EVALSHA named by script), so every round trip MageFlow
makes while driving runs in this process is counted. The ``bench-stats`` task
returns the totals; the benchmark calls it before and after the measured runs.
It also times (on the instance, in this process only) ``execute_run``, the BEGIN and
FINISH store calls and the callback dispatch, to show where MageFlow spends its time.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis.asyncio as aioredis  # noqa: E402
from hatchet_sdk import Hatchet  # noqa: E402

from benchmarks._common import CountingConnection, Tally  # noqa: E402
from benchmarks.hatchet_bench_app import BenchApp  # noqa: E402

BY_COMMAND: Counter[str] = Counter()
SCRIPT_NAMES: dict[str, str] = {}
TIMERS: dict[str, list[float]] = {}  # name -> [calls, seconds]


class DetailCountingConnection(CountingConnection):
    """Also tallies each command by name; an EVALSHA by the store's script name."""

    def pack_command(self, *args: Any) -> list[bytes]:
        name = str(args[0]).upper() if args else "?"
        if name == "EVALSHA" and len(args) > 1:
            name = f"EVALSHA {SCRIPT_NAMES.get(str(args[1]), str(args[1])[:8])}"
        BY_COMMAND[name] += 1
        return super().pack_command(*args)


def snapshot() -> dict[str, Any]:
    return {
        "round_trips": Tally.round_trips,
        "commands": Tally.commands,
        "by_command": dict(BY_COMMAND),
        "timers": {name: list(v) for name, v in TIMERS.items()},
        "pid": os.getpid(),
    }


def timed(obj: Any, attr: str, name: str) -> None:
    """Shadow ``obj.attr`` (an async method) on the instance with a timing wrapper.

    ``obj`` may be a dict (the store's scripts by name): ``attr`` is then the item.
    Instrumentation of this process only: the package code is untouched.
    """
    inner: Callable[..., Awaitable[Any]] = (
        obj[attr] if isinstance(obj, dict) else getattr(obj, attr)
    )
    slot = TIMERS.setdefault(name, [0, 0.0])

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await inner(*args, **kwargs)
        finally:
            slot[0] += 1
            slot[1] += time.perf_counter() - started

    if isinstance(obj, dict):
        obj[attr] = wrapper
    else:
        setattr(obj, attr, wrapper)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    url = os.environ["REDIS_URL"]
    pool = aioredis.ConnectionPool.from_url(
        url, connection_class=DetailCountingConnection, decode_responses=True
    )
    mf_redis = aioredis.Redis(connection_pool=pool)
    rec = aioredis.from_url(url, decode_responses=True)
    app = BenchApp(Hatchet(), mf_redis, rec, os.environ["MFBENCH_PREFIX"], stats=snapshot)
    store = app.mf.runtime.store
    for script_name, script in store.scripts.items():
        SCRIPT_NAMES[script.sha] = script_name.upper()
    runtime = app.mf.runtime
    timed(runtime, "execute_run", "execute_run (whole MageFlow run)")
    timed(store, "begin", "store.begin (BEGIN + decode)")
    timed(store.scripts, "begin", "  BEGIN EVALSHA round trip")
    timed(store, "finish", "store.finish (FINISH + outbox)")
    timed(store.scripts, "finish", "  FINISH EVALSHA round trip")
    timed(runtime.manager, "dispatch", "callback dispatch (Hatchet trigger)")
    worker = app.mf.worker("mfbench-worker", slots=20, workflows=app.workflows)
    worker.start()


if __name__ == "__main__":
    main()
