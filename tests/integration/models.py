"""Module-level input models for integration tests (stored as import paths)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel
from thirdmagic import ReturnValue


class OrderMsg(BaseModel):
    order_id: int
    priority: str = "low"


class ShortFormCallback(BaseModel):
    order: ReturnValue[dict[str, Any]]
    channel: str = "email"


class ExplicitFormCallback(BaseModel):
    total: Annotated[int, ReturnValue()]
    channel: str = "email"


class DefaultFieldCallback(BaseModel):
    mageflow_results: Any
    channel: str = "email"


class LegacyFieldCallback(BaseModel):
    results: Any
    channel: str = "email"


class ErrorCallbackMsg(OrderMsg):
    reason: str
    attempt_note: str = ""


class TwoReturnValues(BaseModel):
    first: ReturnValue[int]
    second: Annotated[int, ReturnValue()]


class Anything(BaseModel):
    model_config = {"extra": "allow"}
