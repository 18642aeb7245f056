"""Alias of :mod:`thirdmagic.message` under its older name ``mageflow.models.message``."""

from thirdmagic.message import (
    DEFAULT_RESULTS_FIELD,
    LEGACY_RESULTS_FIELD,
    ContextMessage,
    ReturnValue,
    inject_return_value,
    resolve_return_field,
)

__all__ = [
    "DEFAULT_RESULTS_FIELD",
    "LEGACY_RESULTS_FIELD",
    "ContextMessage",
    "ReturnValue",
    "inject_return_value",
    "resolve_return_field",
]
