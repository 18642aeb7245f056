"""The docs stay true: in-memory examples run, excerpts match their files, tables match code.

* ``docs/examples/{signatures,callbacks,lifecycle}.py`` run in this process and
  as scripts; ``examples/in_memory.py`` runs as the user runs it.
* Every Python block in ``docs/**/*.md`` and ``README.md`` that quotes a file
  (a link to a ``.py`` file just before it) matches that file line by line;
  longer blocks must quote a file; relative links resolve.
* The transition table in ``docs/lifecycle.md`` is ``thirdmagic.status.TRANSITIONS``.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from thirdmagic.status import PREVIOUS, TRANSITIONS, LifecycleEvent, SignatureStatus

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
MARKDOWN = sorted([README, *DOCS.rglob("*.md")])
IN_MEMORY_EXAMPLES = [
    "signatures",
    "callbacks",
    "lifecycle",
    "containers",
    "operations",
    "handover",
    "big_flows",
]
MAX_UNQUOTED_LINES = 3  # "a line or two"; anything longer must be a real, tested file


@pytest.fixture
def restore_runtime() -> Iterator[None]:
    """The examples configure the default runtime; give the next test back its own."""
    from thirdmagic.backend import current_backend, set_backend

    saved = current_backend()
    yield
    set_backend(saved)


EXAMPLES_DB = 11


@pytest.fixture
def example_url(redis_url: str) -> Iterator[str]:
    """The session's server, but a database of its own, emptied of what the example wrote.

    The examples use the default key prefix, and big_flows alone writes some
    16 000 keys: left in the tests' database, they made every later SCAN (each
    test's clean-up, snapshots, the transition audit) walk them all.
    """
    import redis

    url = urlunsplit(urlsplit(redis_url)._replace(path=f"/{EXAMPLES_DB}"))
    client = redis.Redis.from_url(url)
    before = set(client.scan_iter(count=1000))
    try:
        yield url
    finally:
        new = [k for k in client.scan_iter(count=1000) if k not in before]
        for i in range(0, len(new), 1000):
            client.delete(*new[i : i + 1000])
        client.close()


@pytest.mark.parametrize("name", IN_MEMORY_EXAMPLES)
async def test_in_memory_docs_example(name: str, example_url: str, restore_runtime: None) -> None:
    module = importlib.import_module(f"docs.examples.{name}")
    await module.main(example_url)


def run_python(
    args: list[str], redis_url: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, "REDIS_URL": redis_url},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize("name", IN_MEMORY_EXAMPLES)
def test_in_memory_docs_example_as_script(name: str, example_url: str) -> None:
    done = run_python([f"docs/examples/{name}.py"], example_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == f"{name}: ok"


def test_in_memory_demo(example_url: str) -> None:
    done = run_python(["examples/in_memory.py"], example_url)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "OK: every signature settled" in out
    assert "Redis: REDIS_URL" in out
    assert "suspended  (parked: its run waits for resume)" in out
    assert "resumed order-1003-charge-" in out
    assert "refund-order #1002:" in out and "alert-ops #1002:" in out
    assert out.count("send-receipt #") == 2  # orders 1001 and 1003, once each


# -- markdown ------------------------------------------------------------------------------


@dataclass
class Block:
    md: Path
    line: int
    lang: str
    body: list[str]
    source: Path | None

    def where(self) -> str:
        return f"{self.md.relative_to(ROOT)}:{self.line}"


_FENCE = re.compile(r"^```(\S*)\s*$")
_PY_LINK = re.compile(r"\]\(([^)\s#]+\.py)\)")
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def code_blocks(md: Path) -> list[Block]:
    lines = md.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i, after_last = 0, 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        assert m.group(1), f"{md.relative_to(ROOT)}:{i + 1}: opening fence without a language"
        end = i + 1
        while not lines[end].startswith("```"):
            end += 1
        between = [line for line in lines[after_last:i] if line.strip()]
        source: Path | None = None
        # "From [`file.py`](path):" right before the block names the file it quotes
        links = _PY_LINK.findall(between[-1]) if between else []
        if links and between[-1].rstrip().endswith(":"):
            source = (md.parent / links[-1]).resolve()
        elif blocks and not between:
            source = blocks[-1].source  # consecutive blocks quote the same file
        blocks.append(Block(md, i + 1, m.group(1), lines[i + 1 : end], source))
        after_last = end + 1
        i = end + 1
    return blocks


ALL_BLOCKS = [b for md in MARKDOWN for b in code_blocks(md)]


def test_docs_exist() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in MARKDOWN}
    for required in (
        "README.md",
        "docs/quickstart.md",
        "docs/api/client.md",
        "docs/api/signature.md",
        "docs/callbacks.md",
        "docs/lifecycle.md",
        "docs/testing.md",
        "docs/architecture.md",
    ):
        assert required in names


@pytest.mark.parametrize("block", [b for b in ALL_BLOCKS if b.lang == "python"], ids=Block.where)
def test_python_excerpt_matches_its_file(block: Block) -> None:
    body = [line.strip() for line in block.body if line.strip() and line.strip() != "..."]
    if block.source is None:
        assert len(body) <= MAX_UNQUOTED_LINES, (
            f"{block.where()}: {len(body)} lines of code that quote no file; put them in "
            "docs/examples/ and link the file just before the block"
        )
        return
    assert block.source.is_file(), f"{block.where()}: {block.source} does not exist"
    assert ROOT in block.source.parents, f"{block.where()}: quotes a file outside the repo"
    source = [line.strip() for line in block.source.read_text(encoding="utf-8").splitlines()]
    pos = 0
    for line in body:
        try:
            pos = source.index(line, pos) + 1
        except ValueError:
            pytest.fail(
                f"{block.where()}: {line!r} is not in {block.source.relative_to(ROOT)} "
                "(in this order); update the excerpt"
            )


@pytest.mark.parametrize("md", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(md: Path) -> None:
    text = md.read_text(encoding="utf-8")
    for target in _LINK.findall(text):
        if "://" in target or target.startswith(("#", "mailto:")):
            continue
        path = (md.parent / target.split("#", 1)[0]).resolve()
        assert path.exists(), f"{md.relative_to(ROOT)}: broken link {target}"


def test_readme_first_screen() -> None:
    first = README.read_text(encoding="utf-8").split("\n---\n", 1)[0]
    assert len(first.splitlines()) <= 30
    # the install lines are true (tests/integration/test_install.py runs them)
    assert "uv build --all-packages" in first
    assert "pip install dist/thirdmagic-*.whl dist/mageflow_core-*.whl" in first
    assert "belong to another project" in first
    commands = [
        [line for line in b.body if line.strip()]
        for b in ALL_BLOCKS
        if b.md == README and b.lang == "bash" and b.line < len(first.splitlines())
    ]
    assert ["uv run python examples/order_pipeline.py", "uv run pytest"] in commands
    assert "bash tools/engine/install.sh" in first


def test_lifecycle_table_is_the_transition_table() -> None:
    text = (DOCS / "lifecycle.md").read_text(encoding="utf-8")
    header = next(line for line in text.splitlines() if line.startswith("| status \\ event"))
    events = [LifecycleEvent(c.strip()) for c in header.strip("|").split("|")[1:]]
    assert set(events) == set(LifecycleEvent)
    table: dict[tuple[SignatureStatus, LifecycleEvent], str] = {}
    rows = [line for line in text.splitlines() if line.startswith("| **")]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        status = SignatureStatus(cells[0].strip("*"))
        for event, cell in zip(events, cells[1:], strict=True):
            if cell != "·":
                table[(status, event)] = PREVIOUS if cell == "*previous*" else cell
    assert {s for s, _ in table} | {SignatureStatus(r.split("**")[1]) for r in rows} == set(
        SignatureStatus
    )
    assert table == {cell: str(target) for cell, target in TRANSITIONS.items()}
