"""Compatibility alias of :mod:`mageflow._lifecycle` (the handlers are an implementation detail)."""

from mageflow._lifecycle import HANDLERS, Effects, Handler

__all__ = ["HANDLERS", "Effects", "Handler"]
