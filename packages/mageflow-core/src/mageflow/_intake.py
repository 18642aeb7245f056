"""Checks on a signature handed to MageFlow to be stored as new work.

A signature built anywhere (``asign``, a chain, a swarm, or ``thirdmagic``
alone in another service and handed over with ``submit``) passes through here
before it is stored, so every entry point refuses the same bad input.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from thirdmagic.errors import MageflowValidationError
from thirdmagic.signature import Signature
from thirdmagic.status import TERMINAL_STATUSES

__all__ = ["check_kwargs", "check_new"]

# Only the long option names: a short one ("key", "id") is too close to too
# many ordinary kwarg names to call them misspellings.
_NEAR_MISS_MIN_LENGTH = 5
_NEAR_MISS_CUTOFF = 0.8


def check_new(sig: Signature) -> None:
    """Refuse a new signature that could never run."""
    if sig.status in TERMINAL_STATUSES:
        raise MageflowValidationError(
            f"task_status: a new signature cannot start as {sig.status.value!r} (a terminal "
            "status: it would never run); use 'pending' (the default) or 'suspended'",
            field="task_status",
            key=sig.key,
        )


def _holds_signature(value: Any) -> Signature | None:
    if isinstance(value, Signature):
        return value
    if isinstance(value, (list, tuple, set)):
        return next((v for v in value if isinstance(v, Signature)), None)
    if isinstance(value, dict):
        return next((v for v in value.values() if isinstance(v, Signature)), None)
    return None


def check_kwargs(
    extra: Mapping[str, Any], explicit: Mapping[str, Any], options: Iterable[str]
) -> None:
    """Refuse kwargs that are almost certainly a mistake, naming them.

    ``extra`` are keywords that were not options (they would become bound
    kwargs); ``explicit`` is the ``kwargs=`` mapping. A keyword within a typo
    of an option (``sucess_callbacks``) is refused: bind a kwarg of that name
    with ``kwargs={...}``. A signature as a kwarg value is refused anywhere:
    it would be stored as a JSON dump and never run; attach it as a callback
    or bind its key.
    """
    names = [o for o in options if len(o) >= _NEAR_MISS_MIN_LENGTH]
    for name in extra:
        near = difflib.get_close_matches(name, names, n=1, cutoff=_NEAR_MISS_CUTOFF)
        if near:
            raise MageflowValidationError(
                f"{name}: not an option; did you mean {near[0]!r}? (to bind a task kwarg "
                f"with this name, pass kwargs={{{name!r}: ...}})",
                field=name,
            )
    for name, value in {**explicit, **extra}.items():
        found = _holds_signature(value)
        if found is not None:
            raise MageflowValidationError(
                f"kwargs.{name}: a signature ({found.key!r}) is not a kwarg value; attach it "
                "with success_callbacks/error_callbacks, or bind its key as a string",
                field=f"kwargs.{name}",
            )
