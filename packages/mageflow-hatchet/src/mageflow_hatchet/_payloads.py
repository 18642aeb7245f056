"""Let run inputs that carry a MageFlow payload reference past Hatchet's validation.

Hatchet validates a run's input with the task's ``input_validator`` before
the task function is called. An input whose payload went by reference (see
``mageflow.engine.REFERENCE_TAG``) does not fit the model until core has
resolved it on the worker, so it passes through as a plain dict; core then
validates the resolved input with the same model.
"""

from __future__ import annotations

from typing import Annotated, Any

from mageflow.engine import holds_reference
from pydantic import BaseModel, ValidatorFunctionWrapHandler, WrapValidator

__all__ = ["lenient"]


def _pass_references(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    if holds_reference(value):
        return dict(value)
    return handler(value)


def lenient(model: type[BaseModel]) -> Any:
    """``model`` for Hatchet's ``input_validator``: same validation and serialization,
    except that an input holding a payload reference is handed over as a dict."""
    return Annotated[model, WrapValidator(_pass_references)]
