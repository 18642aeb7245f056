"""Measuring helpers shared by the benchmarks: round trips, commands, timing, tables.

Round trips and client commands are counted on the client, by a
``redis.asyncio.Connection`` subclass: every ``send_packed_command`` is one
network round trip (a pipeline is packed into a single send), and every
``pack_command`` is one command the client asked for. Commands executed by the
server are taken from ``INFO commandstats`` deltas, which count ``EVALSHA`` as
one call and also every ``redis.call()`` made inside a script; "in-script"
below is therefore the server total minus what the client sent.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis


class Tally:
    """Process-wide counters bumped by :class:`CountingConnection`."""

    round_trips = 0
    commands = 0

    @classmethod
    def snapshot(cls) -> tuple[int, int]:
        return cls.round_trips, cls.commands


class CountingConnection(aioredis.Connection):
    """A connection that counts what it sends."""

    def pack_command(self, *args: Any) -> list[bytes]:
        Tally.commands += 1
        return super().pack_command(*args)

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        Tally.round_trips += 1
        await super().send_packed_command(command, check_health)


def counting_client(url: str) -> aioredis.Redis:
    pool = aioredis.ConnectionPool.from_url(
        url, connection_class=CountingConnection, decode_responses=True
    )
    return aioredis.Redis(connection_pool=pool)


async def command_stats(stats: aioredis.Redis) -> Counter[str]:
    """Calls per command name (lower case), from INFO commandstats."""
    return (await command_stats_and_usec(stats))[0]


async def command_stats_and_usec(stats: aioredis.Redis) -> tuple[Counter[str], Counter[str]]:
    """Calls and server CPU microseconds per command name, from INFO commandstats."""
    raw = await stats.info("commandstats")
    calls: Counter[str] = Counter()
    usec: Counter[str] = Counter()
    for name, value in raw.items():
        if name.startswith("cmdstat_") and isinstance(value, dict):
            calls[name[len("cmdstat_") :]] = int(value["calls"])
            usec[name[len("cmdstat_") :]] = int(value["usec"])
    return calls, usec


@dataclass
class Figures:
    """What one measured operation cost, per call."""

    label: str
    n: int
    seconds: float
    round_trips: int
    client_cmds: int
    server: Counter[str] = field(default_factory=Counter)
    cpu_seconds: float = 0.0
    server_usec: Counter[str] = field(default_factory=Counter)

    @property
    def rt(self) -> float:
        return self.round_trips / self.n

    @property
    def sent(self) -> float:
        return self.client_cmds / self.n

    @property
    def server_total(self) -> float:
        return sum(self.server.values()) / self.n

    @property
    def scripts(self) -> float:
        return (self.server["evalsha"] + self.server["eval"]) / self.n

    @property
    def in_script(self) -> float:
        return max(0.0, self.server_total - self.sent)

    @property
    def script_us(self) -> float:
        """Server CPU time inside the scripts (EVALSHA, with its redis.call()s) per call."""
        return (self.server_usec["evalsha"] + self.server_usec["eval"]) / self.n

    @property
    def us_per_op(self) -> float:
        return self.seconds / self.n * 1e6

    @property
    def cpu_us_per_op(self) -> float:
        return self.cpu_seconds / self.n * 1e6

    @property
    def per_second(self) -> float:
        return self.n / self.seconds if self.seconds else float("inf")

    def breakdown(self) -> str:
        parts = [
            f"{name.upper()} {fmt(calls / self.n)}"
            for name, calls in sorted(self.server.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        return ", ".join(parts) or "-"


async def measure(
    label: str,
    stats: aioredis.Redis,
    n: int,
    op: Callable[[int], Awaitable[Any]],
    concurrency: int = 1,
) -> Figures:
    """Run ``op(i)`` for i in range(n), ``concurrency`` coroutines at a time."""
    import asyncio

    before, usec0 = await command_stats_and_usec(stats)
    rt0, c0 = Tally.snapshot()
    started = time.perf_counter()
    cpu_started = time.process_time()
    if concurrency <= 1:
        for i in range(n):
            await op(i)
    else:

        async def worker(first: int) -> None:
            for i in range(first, n, concurrency):
                await op(i)

        await asyncio.gather(*(worker(w) for w in range(concurrency)))
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    rt1, c1 = Tally.snapshot()
    after, usec1 = await command_stats_and_usec(stats)
    delta = Counter({k: after[k] - before.get(k, 0) for k in after})
    delta.pop("info", None)  # the stats client's own INFO call
    delta = Counter({k: v for k, v in delta.items() if v > 0})
    usec = Counter({k: usec1[k] - usec0.get(k, 0) for k in usec1 if k in delta})
    return Figures(label, n, seconds, rt1 - rt0, c1 - c0, delta, cpu, usec)


async def drop_prefix(stats: aioredis.Redis, prefix: str) -> None:
    """Delete every key under ``prefix`` (a benchmark's own), in batches of 1 000."""
    batch: list[str] = []
    async for key in stats.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            await stats.unlink(*batch)
            batch.clear()
    if batch:
        await stats.unlink(*batch)


def fmt(value: float) -> str:
    if value == int(value):
        return str(int(value))
    return f"{value:.2f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Plain aligned text; the first column left-aligned, the others right-aligned."""
    body = [list(map(str, r)) for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        out = [cells[0].ljust(widths[0])]
        out += [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in body)])


def tree_cpu(root: int) -> Counter[str]:
    """CPU seconds (user + system) used so far by ``root`` and its descendants, by role.

    Read from ``/proc`` (Linux only; empty elsewhere). Processes are grouped by
    their command name (``hatchet-lite``, ``postgres``, ``valkey-server``…);
    ``root`` itself is ``benchmark``, the engine's launcher ``sidecar`` and any
    other Python process ``worker``.
    Exited processes drop out, so compare two samples of a steady process set.
    """
    import os

    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    parent: dict[int, int] = {}
    stats: dict[int, tuple[str, float]] = {}
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return Counter()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        # the command name is in parentheses and may itself hold spaces
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        parent[pid] = int(fields[1])
        stats[pid] = (name, (int(fields[11]) + int(fields[12])) / tick)
    out: Counter[str] = Counter()
    for pid, (name, seconds) in stats.items():
        p, inside = pid, False
        for _ in range(64):
            if p == root:
                inside = True
                break
            p = parent.get(p, 0)
            if p <= 1:
                break
        if not inside:
            continue
        if pid == root:
            role = "benchmark"
        elif name.startswith("python"):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                argv = ""
            role = "sidecar" if "sidecar" in argv else "worker"
        else:
            role = name
        out[role] += seconds
    return out
