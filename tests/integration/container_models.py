"""Module-level input models for the chain, swarm and nesting tests."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from thirdmagic import ReturnValue


class Num(BaseModel):
    """A first step or a swarm member: ``x`` in, ``x + add`` out."""

    x: int = 0
    add: int = 1
    tag: str = ""
    fail: bool = False


class Prev(BaseModel):
    """A later chain step: receives the previous step's result in ``prev``."""

    prev: ReturnValue[Any]
    add: int = 1
    tag: str = ""
    fail: bool = False


class Results(BaseModel):
    """Receives a result in the default field ``mageflow_results``."""

    mageflow_results: Any
    tag: str = ""


class Loose(BaseModel):
    """Accepts anything: for error callbacks and members fed arbitrary messages."""

    model_config = ConfigDict(extra="allow")

    tag: str = ""
