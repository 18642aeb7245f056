"""Signature statuses and the lifecycle transition table.

The table below is the single source of truth for the lifecycle: the Redis
store compiles it into its Lua scripts, and the state machine in
``mageflow`` dispatches one handler per entry.

=============== ========= ======= ====== ========= =========== ========== ======== ======= =======
status \\ event start     succeed fail   suspend   interrupt   resume     cancel   retry   skip
=============== ========= ======= ====== ========= =========== ========== ======== ======= =======
pending         active    ·       ·      suspended interrupted pending    canceled ·       skipped
active          active    done    failed suspended interrupted active     canceled ·       ·
suspended       suspended done    failed suspended interrupted *previous* canceled ·       skipped
interrupted     ·         ·       ·      ·         interrupted pending    canceled ·       skipped
done            ·         done    ·      ·         ·           ·          ·        ·       ·
failed          ·         ·       failed ·         ·           ·          ·        pending ·
canceled        ·         ·       ·      ·         ·           ·          canceled pending ·
skipped         ·         ·       ·      ·         ·           ·          ·        pending skipped
=============== ========= ======= ====== ========= =========== ========== ======== ======= =======

``retry`` is the only way out of a terminal status: ``mageflow.retry`` takes
a failed or canceled task back to ``pending`` and runs it again with its stored
input (a new attempt of the same signature).

``·`` is an invalid transition: it raises and changes nothing. A transition to
the same status is an idempotent no-op, which is what makes every event safe
to repeat. Notes on the non-obvious cells:

* ``active --start--> active`` is a retry attempt of the run that owns the
  signature.
* ``suspended --start--> suspended``: the run is *parked* (its message is kept,
  its body does not execute); ``resume`` re-dispatches it exactly once.
* ``suspended --succeed/fail-->``: an attempt that was already running when the
  signature was suspended is allowed to finish; its outcome is honoured.
* ``suspended --resume-->`` restores the status the signature had before it
  was suspended (``pending`` or ``active``).
* ``interrupted --resume--> pending``: the interrupted run is dispatched again
  with the message it was started with.
* ``skipped --retry--> pending``: retrying the failed parent un-skips the
  success callbacks its failure skipped (the store does it in the same step);
  a skipped signature never ran, so retrying it directly is refused.
* ``skip`` is applied by the store only, in the step that settles a parent: the
  callbacks of the branch the parent did not take (its error callbacks when it
  succeeded, its success callbacks when it failed) become ``skipped`` unless
  another unsettled parent still has them, so nothing waits for them for ever.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict

__all__ = [
    "PREVIOUS",
    "TERMINAL_STATUSES",
    "TRANSITIONS",
    "LifecycleEvent",
    "PauseActionTypes",
    "SignatureStatus",
    "TaskStatus",
    "TransitionTarget",
    "next_status",
    "pause_event",
]


class SignatureStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    INTERRUPTED = "interrupted"
    DONE = "done"
    FAILED = "failed"
    CANCELED = "canceled"
    SKIPPED = "skipped"


class LifecycleEvent(StrEnum):
    START = "start"
    SUCCEED = "succeed"
    FAIL = "fail"
    SUSPEND = "suspend"
    INTERRUPT = "interrupt"
    RESUME = "resume"
    CANCEL = "cancel"
    RETRY = "retry"
    SKIP = "skip"


class PauseActionTypes(StrEnum):
    """How ``pause``/``pause_task`` stops a signature.

    SUSPEND is graceful: nothing new starts, an attempt already running may
    finish, a run that arrives is parked and replayed on resume.
    INTERRUPT is aggressive: the running run is cancelled in the engine.
    """

    SUSPEND = "suspend"
    INTERRUPT = "interrupt"


def pause_event(pause_type: PauseActionTypes | str) -> LifecycleEvent:
    """The lifecycle event a pause type stands for; a clear error for anything else."""
    try:
        kind = PauseActionTypes(pause_type)
    except ValueError:
        from thirdmagic.errors import MageflowValidationError

        choices = ", ".join(repr(p.value) for p in PauseActionTypes)
        raise MageflowValidationError(
            f"pause_type: expected one of {choices}, got {pause_type!r}", field="pause_type"
        ) from None
    return (
        LifecycleEvent.INTERRUPT if kind is PauseActionTypes.INTERRUPT else LifecycleEvent.SUSPEND
    )


PREVIOUS: Final = "previous"
"""Transition target meaning "the status before the current one"."""

TransitionTarget = SignatureStatus | Literal["previous"]

_S = SignatureStatus
_E = LifecycleEvent

TRANSITIONS: Final[Mapping[tuple[SignatureStatus, LifecycleEvent], TransitionTarget]] = {
    (_S.PENDING, _E.START): _S.ACTIVE,
    (_S.PENDING, _E.SUSPEND): _S.SUSPENDED,
    (_S.PENDING, _E.INTERRUPT): _S.INTERRUPTED,
    (_S.PENDING, _E.RESUME): _S.PENDING,
    (_S.PENDING, _E.CANCEL): _S.CANCELED,
    (_S.ACTIVE, _E.START): _S.ACTIVE,
    (_S.ACTIVE, _E.SUCCEED): _S.DONE,
    (_S.ACTIVE, _E.FAIL): _S.FAILED,
    (_S.ACTIVE, _E.SUSPEND): _S.SUSPENDED,
    (_S.ACTIVE, _E.INTERRUPT): _S.INTERRUPTED,
    (_S.ACTIVE, _E.RESUME): _S.ACTIVE,
    (_S.ACTIVE, _E.CANCEL): _S.CANCELED,
    (_S.SUSPENDED, _E.START): _S.SUSPENDED,
    (_S.SUSPENDED, _E.SUCCEED): _S.DONE,
    (_S.SUSPENDED, _E.FAIL): _S.FAILED,
    (_S.SUSPENDED, _E.SUSPEND): _S.SUSPENDED,
    (_S.SUSPENDED, _E.INTERRUPT): _S.INTERRUPTED,
    (_S.SUSPENDED, _E.RESUME): PREVIOUS,
    (_S.SUSPENDED, _E.CANCEL): _S.CANCELED,
    (_S.INTERRUPTED, _E.INTERRUPT): _S.INTERRUPTED,
    (_S.INTERRUPTED, _E.RESUME): _S.PENDING,
    (_S.INTERRUPTED, _E.CANCEL): _S.CANCELED,
    (_S.DONE, _E.SUCCEED): _S.DONE,
    (_S.FAILED, _E.FAIL): _S.FAILED,
    (_S.CANCELED, _E.CANCEL): _S.CANCELED,
    (_S.FAILED, _E.RETRY): _S.PENDING,
    (_S.CANCELED, _E.RETRY): _S.PENDING,
    # a callback of the branch its parent did not take will never fire
    (_S.PENDING, _E.SKIP): _S.SKIPPED,
    (_S.SUSPENDED, _E.SKIP): _S.SKIPPED,
    (_S.INTERRUPTED, _E.SKIP): _S.SKIPPED,
    (_S.SKIPPED, _E.SKIP): _S.SKIPPED,
    # a retried failure may still succeed: what its failure skipped waits again
    (_S.SKIPPED, _E.RETRY): _S.PENDING,
}

TERMINAL_STATUSES: Final[frozenset[SignatureStatus]] = frozenset(
    {_S.DONE, _S.FAILED, _S.CANCELED, _S.SKIPPED}
)


def next_status(
    current: SignatureStatus, event: LifecycleEvent, previous: SignatureStatus | None
) -> SignatureStatus | None:
    """Status after ``event`` from ``current``, or None when the event is invalid."""
    target = TRANSITIONS.get((current, event))
    if target is None:
        return None
    if target == PREVIOUS:
        return previous if previous is not None else SignatureStatus.PENDING
    return SignatureStatus(target)


class TaskStatus(BaseModel):
    """A signature's current status and the one it had before."""

    model_config = ConfigDict(frozen=True)

    status: SignatureStatus = SignatureStatus.PENDING
    last_status: SignatureStatus | None = None
