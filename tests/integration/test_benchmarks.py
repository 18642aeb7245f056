"""The benchmark scripts still import and the worker-path one runs, at a tiny size.

Benchmarks are run by hand (benchmarks/README.md); without this a refactor of
what they import would only show the next time somebody measures.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(
    p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem not in ("__init__", "_common")
)


@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_script_imports(name: str) -> None:
    module = importlib.import_module(f"benchmarks.{name}")
    assert module.__doc__


async def test_worker_bench_runs_a_small_swarm(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import worker_bench

    await worker_bench.main(redis_url, 60, 10, 1)
    out = capsys.readouterr().out
    assert "swarm member" in out and "floor: 2 EVALSHA" in out


async def test_results_memory_runs_a_small_list(redis_url: str) -> None:
    from benchmarks import results_memory

    rows = await results_memory.main(redis_url, 50, 64)
    assert [row[0].split(":")[0] for row in rows] == [
        "baseline",
        "ReturnValue[list[T]]",
        "ReturnValue[SwarmResults]",
    ]
