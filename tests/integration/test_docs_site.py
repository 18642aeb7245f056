"""Issue 11.9: the docs build as a site (mkdocs-material), strictly, with the API reference.

``mkdocs build --strict`` fails on a broken link or anchor, a missing page and a
docstring mkdocstrings cannot read; the reference pages must contain what the
docstrings say. (.ci/run builds the site too.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_mkdocs_build_strict_with_the_api_reference(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    reference = (site / "reference" / "thirdmagic" / "index.html").read_text()
    assert "FlowSpec" in reference and "A signature plus every not-yet-stored" in reference
    api = (site / "reference" / "mageflow" / "index.html").read_text()
    assert "lock_task" in api and "submit" in api
    assert "admonition" in (site / "index.html").read_text()  # the spec's !!! blocks render
    for page in ("quickstart", "lifecycle", "callbacks", "containers", "api/signature"):
        assert (site / page / "index.html").is_file(), page
