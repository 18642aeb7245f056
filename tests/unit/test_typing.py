"""User code written from the docs type-checks (mypy --strict, pyright); no casts or ignores."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TYPING = ROOT / "tests" / "typing"
MODULES = sorted(p for p in TYPING.glob("*.py") if p.name != "__init__.py")


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)


def test_typing_modules_use_no_escape_hatches() -> None:
    assert MODULES
    for path in MODULES:
        text = path.read_text(encoding="utf-8")
        for hatch in ("type: ignore", "pyright: ignore", "cast(", "Any = ", "# noqa"):
            assert hatch not in text, f"{path.name} uses {hatch!r}"


def test_mypy_strict_accepts_user_code() -> None:
    done = _run([sys.executable, "-m", "mypy", "--strict", *map(str, MODULES)])
    assert done.returncode == 0, done.stdout + done.stderr


def test_pyright_strict_accepts_user_code() -> None:
    exe = shutil.which("basedpyright", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("basedpyright is a dev dependency: run uv sync")
    done = _run([exe, *map(str, MODULES)])
    assert done.returncode == 0, done.stdout + done.stderr
