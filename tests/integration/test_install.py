"""Issue 11.7: the README's install lines are true: build the wheels, install them, import.

``uv build --all-packages`` builds the three distributions; they go into a
fresh virtualenv together (their third-party dependencies come from PyPI, or
uv's cache) and import there, with the adapter found through its entry point.
The wheels carry the package READMEs as their long descriptions.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DISTS = ("thirdmagic", "mageflow_core", "mageflow_hatchet", "mageflow_dashboard")

CHECK = """
import importlib.metadata as md
import thirdmagic, mageflow, mageflow_hatchet, mageflow_dashboard
from mageflow import Mageflow
from thirdmagic import FlowSpec, TaskSignature
assert Mageflow is mageflow_hatchet.Mageflow
assert callable(mageflow.submit)  # ours, not PyPI's project of the same import name
spec = FlowSpec.of(TaskSignature(task_name="t"))
assert FlowSpec.from_json(spec.to_json()) == spec
for dist in ("thirdmagic", "mageflow-core", "mageflow-hatchet", "mageflow-dashboard"):
    assert md.version(dist) == "0.1.0", dist
print("ok")
"""


def _run(args: list[str], cwd: Path) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_built_wheels_install_into_a_clean_venv_and_import(tmp_path: Path) -> None:
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is not on PATH (CI installs it in .ci/run)")
    dist = tmp_path / "dist"
    _run([uv, "build", "--all-packages", "--wheel", "-o", str(dist)], ROOT)
    wheels = sorted(dist.glob("*.whl"))
    assert [w.name.split("-")[0] for w in wheels] == sorted(DISTS)

    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            text = zf.read(meta).decode()
        assert "Description-Content-Type: text/markdown" in text, wheel.name
        body = text.split("\n\n", 1)[1]
        assert len(body) > 700, f"{wheel.name}: the README (long description) is nearly empty"
        assert "another project" in body or "not on PyPI" in body, wheel.name

    venv = tmp_path / "venv"
    # the interpreter running the tests: no Python download in CI
    _run([uv, "venv", "-q", "--python", sys.executable, str(venv)], tmp_path)
    python = venv / "bin" / "python"
    _run([uv, "pip", "install", "-q", "--python", str(python), *map(str, wheels)], tmp_path)
    assert _run([str(python), "-c", CHECK], tmp_path).strip() == "ok"
