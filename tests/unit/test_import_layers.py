"""Layering: thirdmagic is pure models, core never touches an engine SDK, no pickle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ROOT / "packages"
THIRDMAGIC_SRC = PACKAGES / "thirdmagic" / "src"
CORE_SRC = PACKAGES / "mageflow-core" / "src"


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("thirdmagic", ["redis", "hatchet_sdk", "mageflow", "pickle", "dill", "cloudpickle"]),
        ("mageflow", ["hatchet_sdk", "pickle", "dill", "cloudpickle"]),
        # the CLI ships with core: the dashboard and its web stack stay optional
        ("mageflow.cli", ["hatchet_sdk", "mageflow_dashboard", "starlette", "uvicorn"]),
    ],
)
def test_import_does_not_load_forbidden_modules(module: str, forbidden: list[str]) -> None:
    code = (
        "import sys\n"
        f"import {module}\n"
        f"bad = [m for m in {forbidden!r} if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    done = _run(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_mageflow_public_api_loads_without_an_adapter_import() -> None:
    done = _run(
        "import sys, mageflow\n"
        "for name in mageflow.__all__: getattr(mageflow, name)\n"
        "assert 'hatchet_sdk' not in sys.modules\n"
        "assert 'mageflow_hatchet' not in sys.modules\n"
    )
    assert done.returncode == 0, done.stderr


def _is_type_checking_block(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those inside ``if TYPE_CHECKING:`` (never executed)."""
    out: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        out.append(node)
        if _is_type_checking_block(node):
            assert isinstance(node, ast.If)
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))
    return out


def _imported_roots(path: Path, *, runtime_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in _runtime_nodes(tree) if runtime_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute)):
            # importlib.import_module("pickle") / __import__("pickle")
            name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
            if name in ("import_module", "__import__") and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    roots.add(arg.value.split(".")[0])
    return roots


def _sources(base: Path) -> list[Path]:
    files = sorted(p for p in base.rglob("*.py") if ".venv" not in p.parts)
    assert files, f"no sources under {base}"
    return files


def test_no_package_imports_pickle() -> None:
    offenders = {
        str(p.relative_to(ROOT)): sorted(bad)
        for p in _sources(PACKAGES)
        if (bad := _imported_roots(p) & {"pickle", "dill", "cloudpickle", "_pickle", "shelve"})
    }
    assert not offenders


def test_thirdmagic_sources_import_no_io_or_engine() -> None:
    offenders = {
        str(p.relative_to(ROOT)): sorted(bad)
        for p in _sources(THIRDMAGIC_SRC)
        if (bad := _imported_roots(p) & {"redis", "hatchet_sdk", "mageflow", "mageflow_hatchet"})
    }
    assert not offenders


def test_core_sources_never_import_an_engine_sdk() -> None:
    # ``if TYPE_CHECKING:`` blocks never run; type checkers may see the adapter.
    offenders = {
        str(p.relative_to(ROOT)): sorted(bad)
        for p in _sources(CORE_SRC)
        if (bad := _imported_roots(p, runtime_only=True) & {"hatchet_sdk", "mageflow_hatchet"})
    }
    assert not offenders


def test_core_packages_never_require_the_dashboard_or_its_stack() -> None:
    import tomllib

    for name in ("thirdmagic", "mageflow-core", "mageflow-hatchet"):
        project = tomllib.loads((PACKAGES / name / "pyproject.toml").read_text())["project"]
        deps = [*project.get("dependencies", [])]
        for extra in project.get("optional-dependencies", {}).values():
            deps += extra
        bad = [
            d
            for d in deps
            if d.split("[")[0].split(">")[0].split("=")[0].strip()
            in ("mageflow-dashboard", "starlette", "uvicorn", "playwright")
        ]
        assert not bad, (name, bad)


def test_core_imports_the_dashboard_only_lazily() -> None:
    for path in _sources(CORE_SRC):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:  # module level only: a lazy import sits in a function
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.split(".")[0] == "mageflow_dashboard" for n in names), path


def test_core_names_the_adapter_only_for_the_typed_mageflow_client() -> None:
    typed_only = {
        str(p.relative_to(ROOT))
        for p in _sources(CORE_SRC)
        if _imported_roots(p) & {"hatchet_sdk", "mageflow_hatchet"}
    }
    assert typed_only == {"packages/mageflow-core/src/mageflow/__init__.py"}


def test_scanner_skips_type_checking_blocks_only_when_asked(tmp_path: Path) -> None:
    sample = tmp_path / "s.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import hatchet_sdk\n"
        "else:\n    import redis\n"
    )
    assert "hatchet_sdk" in _imported_roots(sample)
    assert _imported_roots(sample, runtime_only=True) == {"typing", "redis"}


def test_scanner_finds_imports(tmp_path: Path) -> None:
    sample = tmp_path / "s.py"
    sample.write_text(
        "import pickle as p\nfrom redis.asyncio import Redis\n"
        "import importlib\nimportlib.import_module('dill')\n"
        "def f():\n    import hatchet_sdk\n"
    )
    assert {"pickle", "redis", "dill", "hatchet_sdk"} <= _imported_roots(sample)
