"""Every name in the docs' "Spec names" tables resolves to something real."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api"
_SECTION = "## Spec names: current spelling and aliases"


def _resolve(dotted: str) -> Any:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if isinstance(obj, type) and attr in getattr(obj, "model_fields", {}):
                obj = obj.model_fields[attr]
            else:
                obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def _names(page: Path) -> list[str]:
    text = page.read_text()
    assert _SECTION in text, f"{page.name} has no spec-name table"
    table = text.split(_SECTION, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    names: list[str] = []
    for row in rows:
        for cell in row.strip("|").split("|"):
            first = re.match(r"\s*`([A-Za-z_][\w.]*)`", cell)
            if first:
                names.append(first.group(1))
    return names


@pytest.mark.unit
@pytest.mark.parametrize("page", ["signature.md", "client.md"])
def test_every_listed_spec_name_resolves(page: str) -> None:
    names = _names(DOCS / page)
    assert len(names) > 5
    for name in names:
        assert _resolve(name) is not None, name


@pytest.mark.unit
def test_alias_pairs_are_the_same_object() -> None:
    import mageflow
    from mageflow.models import message as old

    assert mageflow.sign is mageflow.asign
    assert mageflow.chain is mageflow.achain
    assert mageflow.swarm is mageflow.aswarm
    assert mageflow.resume_task is mageflow.resume
    assert old.ReturnValue is importlib.import_module("thirdmagic.message").ReturnValue
