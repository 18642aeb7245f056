"""What a task function receives when MageFlow calls it."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["AcceptParams"]


class AcceptParams(StrEnum):
    """Which arguments an adapter passes to a task function.

    NO_CTX
        The function is called with the validated message only: ``fn(msg)``.
    ALL
        The function is called with the message and the engine's run context:
        ``fn(msg, ctx)`` (for Hatchet, ``ctx`` is ``hatchet_sdk.Context``).
    CTX_ONLY
        The function is called with the engine's run context only: ``fn(ctx)``.
        The message is not passed; the function reads its input from the context
        (for Hatchet, ``ctx.workflow_input``).
    """

    NO_CTX = "no_ctx"
    ALL = "all"
    CTX_ONLY = "ctx_only"
