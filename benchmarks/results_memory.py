"""Worker memory for a big swarm's result list: the whole list vs streamed in chunks.

Run from the repository root::

    uv run python benchmarks/results_memory.py [--members N] [--size BYTES]

A swarm's results hash is filled with ``N`` results, each a JSON string of
``BYTES`` characters (what ``N`` members returning such a string leave
behind), against a real Redis (``REDIS_URL``, a testcontainer or the bundled
valkey, as in ``tests/_redis.py``). Then, with ``tracemalloc`` on, the worker
side of a success callback reads them as ``ReturnValue[list[T]]`` receives them
(``_payloads.resolve`` of the swarm's reference: the whole list) and as
``ReturnValue[SwarmResults]`` hands them out (``aiter()``, one chunk of
``MageflowConfig.results_chunk`` at a time). The baseline is the same list
built in memory with no Redis at all (``json.loads`` of the stored strings,
kept): what any list of those results costs in Python.

Printed per variant: the peak traced memory while reading, and what stays
allocated afterwards (the list the callback keeps), in MB and bytes per member.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import mageflow  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
from mageflow import MageflowConfig, SwarmResults  # noqa: E402
from mageflow._payloads import resolve  # noqa: E402
from mageflow._store.codec import REF  # noqa: E402
from mageflow.inmemory import InMemoryTaskManager  # noqa: E402

from benchmarks._common import drop_prefix, table  # noqa: E402


async def _traced(go: Callable[[], Awaitable[Any]]) -> tuple[float, float, float, Any]:
    """(peak bytes, bytes still held, seconds, what ``go`` returned)."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    kept = await go()
    elapsed = time.perf_counter() - t0
    gc.collect()
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak - base, held - base, elapsed, kept


async def main(url: str, n: int, size: int) -> list[list[str]]:
    prefix = f"mfmem:{uuid.uuid4().hex[:8]}:"
    stats = aioredis.from_url(url, decode_responses=True)
    runtime = mageflow.create_runtime(url, InMemoryTaskManager(), MageflowConfig(key_prefix=prefix))
    store = runtime.store
    key = f"swarm-{uuid.uuid4().hex}"
    stored = [json.dumps(f"{i}:" + "x" * (size - 12)) for i in range(n)]
    ref = {REF.tag: {REF.kind: REF.swarm, REF.key: key, REF.count: n}}
    try:
        await store.prepare()
        pipe = stats.pipeline(transaction=False)
        # a stand-in for the swarm: its results are read only while it exists
        pipe.hset(store.keys.sig(key), "v", "1")
        for start in range(0, n, 5000):
            chunk = {str(i): stored[i] for i in range(start, min(n, start + 5000))}
            pipe.hset(store.keys.swarm_results(key), mapping=chunk)
        await pipe.execute()

        async def baseline() -> list[Any]:
            return [json.loads(s) for s in stored]

        async def whole() -> list[Any]:
            with runtime.activate():
                return list(await resolve(store, ref))

        async def streamed() -> int:
            count = 0
            with runtime.activate():
                async for _item in SwarmResults.model_validate(ref).aiter():
                    count += 1
            return count

        rows: list[list[str]] = []
        for label, go in (
            ("baseline: the list built in memory (no Redis)", baseline),
            ("ReturnValue[list[T]]: the whole list, read in chunks", whole),
            ("ReturnValue[SwarmResults]: aiter(), nothing kept", streamed),
        ):
            peak, held, elapsed, kept = await _traced(go)
            got = kept if isinstance(kept, int) else len(kept)
            assert got == n, (label, got)
            del kept
            rows.append(
                [
                    label,
                    f"{peak / 1e6:.1f}",
                    f"{peak / n:.0f}",
                    f"{max(held, 0) / 1e6:.1f}",
                    f"{elapsed:.2f}",
                ]
            )
        return rows
    finally:
        await runtime.store.client.aclose()
        await drop_prefix(stats, prefix)
        await stats.aclose()


def cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=1024, help="bytes of JSON per result")
    args = parser.parse_args()
    from tests._redis import redis_server

    with redis_server() as url:
        rows = asyncio.run(main(url, args.members, args.size))
    print(
        f"\nWorker memory for a swarm's result list ({args.members} results of "
        f"{args.size} bytes of JSON each; tracemalloc)"
    )
    headers = ["how the callback reads it", "peak MB", "peak B/member", "kept MB", "s"]
    print(table(headers, rows))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
