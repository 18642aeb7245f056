"""An engine adapter uses only MageFlow's public names: what ``mageflow_hatchet`` may import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ADAPTER_SRC = ROOT / "packages" / "mageflow-hatchet" / "src" / "mageflow_hatchet"

# The adapter contract is mageflow.engine; mageflow and mageflow.testing are the
# user surface; thirdmagic's modules are all public.
ALLOWED_MAGEFLOW = {"mageflow", "mageflow.engine", "mageflow.testing"}


def _mageflow_imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) for every import of mageflow/thirdmagic in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[str, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, "") for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.extend((node.module, alias.name) for alias in node.names)
    return [(m, n) for m, n in found if m.split(".")[0] in ("mageflow", "thirdmagic")]


def _is_private(module: str, name: str) -> bool:
    parts = module.split(".")
    if any(part.startswith("_") for part in parts) or name.startswith("_"):
        return True
    return parts[0] == "mageflow" and module not in ALLOWED_MAGEFLOW


def _private_uses(path: Path) -> list[str]:
    return [f"{m}:{n}" for m, n in _mageflow_imports(path) if _is_private(m, n)]


def test_adapter_imports_only_public_mageflow_names() -> None:
    sources = sorted(ADAPTER_SRC.rglob("*.py"))
    assert sources
    offenders = {str(p.relative_to(ROOT)): bad for p in sources if (bad := _private_uses(p))}
    assert not offenders


@pytest.mark.parametrize(
    ("source", "bad"),
    [
        ("from mageflow._runtime import MageflowRuntime\n", ["mageflow._runtime:MageflowRuntime"]),
        ("from mageflow.config import MageflowConfig\n", ["mageflow.config:MageflowConfig"]),
        ("import mageflow._store\n", ["mageflow._store:"]),
        ("from mageflow import _merge\n", ["mageflow:_merge"]),
        ("def f():\n    from thirdmagic._x import y\n", ["thirdmagic._x:y"]),
        ("from mageflow.engine import RunRequest\nimport thirdmagic.signature\n", []),
    ],
)
def test_scanner_flags_private_names(tmp_path: Path, source: str, bad: list[str]) -> None:
    sample = tmp_path / "s.py"
    sample.write_text(source)
    assert _private_uses(sample) == bad
