"""Checks on a signature handed to MageFlow to be stored as new work.

A signature built anywhere (``asign``, a chain, a swarm, or ``thirdmagic``
alone in another service and handed over with ``submit``) passes through here
before it is stored, so every entry point refuses the same bad input.
"""

from __future__ import annotations

from thirdmagic.errors import MageflowValidationError
from thirdmagic.signature import Signature
from thirdmagic.status import TERMINAL_STATUSES

__all__ = ["check_new"]


def check_new(sig: Signature) -> None:
    """Refuse a new signature that could never run."""
    if sig.status in TERMINAL_STATUSES:
        raise MageflowValidationError(
            f"task_status: a new signature cannot start as {sig.status.value!r} (a terminal "
            "status: it would never run); use 'pending' (the default) or 'suspended'",
            field="task_status",
            key=sig.key,
        )
