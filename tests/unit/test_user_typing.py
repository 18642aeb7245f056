"""User code written from the docs passes ``mypy --strict`` without casts (issue 11.1, 11.6).

``_typed_user_code.py`` keeps the older guide's ``Annotated[T, ReturnValue()]``,
which mypy accepts and pyright does not (docs/callbacks.md); its pyright-clean
twin is ``tests/typing/older_names_and_handover.py``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.unit
def test_docs_style_user_code_type_checks() -> None:
    files = ["tests/unit/_typed_user_code.py", "docs/examples/handover_service.py"]
    done = subprocess.run(
        # incremental (mypy's default): the dependencies' cache from the project's
        # own mypy run is reused; --no-incremental re-checked pydantic & co. (~30-45 s)
        [sys.executable, "-m", "mypy", "--strict", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
