"""MageFlow: persistent task signatures, callbacks and lifecycle control.

``import mageflow`` gives the engine-independent API. ``mageflow.Mageflow``,
the client for an engine, comes from an installed adapter package
(``mageflow-hatchet``), found through the ``mageflow.adapters`` entry point.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from thirdmagic import (
    AcceptParams,
    ChainSignature,
    ConfigurationError,
    ContainerProgress,
    DispatchPendingError,
    DispatchRefusedError,
    EngineError,
    ErrorDetails,
    ErrorInfo,
    FlowSpec,
    InvalidTransitionError,
    LockLostError,
    MageflowError,
    MageflowValidationError,
    NotFoundError,
    PauseActionTypes,
    ResultTimeoutError,
    ReturnValue,
    Signature,
    SignatureCanceledError,
    SignatureFailedError,
    SignatureLockedError,
    SignatureNotFoundError,
    SignatureStatus,
    StoreError,
    StoreUnavailableError,
    SwarmClosedError,
    SwarmConfig,
    SwarmFullError,
    SwarmSignature,
    TaskSignature,
    TaskStatus,
)
from thirdmagic.errors import BulkValidationError

from mageflow._api import (
    achain,
    asign,
    asign_many,
    aswarm,
    configure,
    create_runtime,
    get_runtime,
    load_signature,
    lock_task,
    pause,
    reconcile,
    recover,
    remove,
    resume,
    submit,
)

# The ``import X as X`` names are importable for compatibility but kept out of
# ``__all__`` (docs/api/client.md, "Aliases"): legacy spellings of the
# functions above, and the adapter contract, whose home is ``mageflow.engine``.
from mageflow._api import chain as chain
from mageflow._api import resume_task as resume_task
from mageflow._api import sign as sign
from mageflow._api import swarm as swarm
from mageflow._flows import (
    cancel,
    list_signatures,
    progress,
    result,
    retry,
    stuck_signatures,
)
from mageflow._payloads import SwarmResults
from mageflow._query import StuckSignature
from mageflow._reconcile import ReconcileReport
from mageflow._runtime import MageflowRuntime
from mageflow.config import MageflowConfig
from mageflow.engine import CancelRequest as CancelRequest
from mageflow.engine import DescribeRequest as DescribeRequest
from mageflow.engine import DispatchRequest as DispatchRequest
from mageflow.engine import DispatchResult as DispatchResult
from mageflow.engine import NonRetryable
from mageflow.engine import RunOutcome as RunOutcome
from mageflow.engine import RunRequest as RunRequest
from mageflow.engine import TaskDescription as TaskDescription
from mageflow.engine import TaskManager as TaskManager

if TYPE_CHECKING:
    # Type checkers see the Hatchet client's real type; at run time it is
    # looked up through the adapter entry point (``__getattr__`` below), so
    # core never imports an engine SDK.
    from mageflow_hatchet import Mageflow as Mageflow

__all__ = [
    "AcceptParams",
    "BulkValidationError",
    "ChainSignature",
    "ConfigurationError",
    "ContainerProgress",
    "DispatchPendingError",
    "DispatchRefusedError",
    "EngineError",
    "ErrorDetails",
    "ErrorInfo",
    "FlowSpec",
    "InvalidTransitionError",
    "LockLostError",
    "MageflowConfig",
    "MageflowError",
    "MageflowRuntime",
    "MageflowValidationError",
    "NonRetryable",
    "NotFoundError",
    "PauseActionTypes",
    "ReconcileReport",
    "ResultTimeoutError",
    "ReturnValue",
    "Signature",
    "SignatureCanceledError",
    "SignatureFailedError",
    "SignatureLockedError",
    "SignatureNotFoundError",
    "SignatureStatus",
    "StoreError",
    "StoreUnavailableError",
    "StuckSignature",
    "SwarmClosedError",
    "SwarmConfig",
    "SwarmFullError",
    "SwarmResults",
    "SwarmSignature",
    "TaskSignature",
    "TaskStatus",
    "achain",
    "asign",
    "asign_many",
    "aswarm",
    "cancel",
    "configure",
    "create_runtime",
    "get_runtime",
    "list_signatures",
    "load_signature",
    "lock_task",
    "pause",
    "progress",
    "reconcile",
    "recover",
    "remove",
    "result",
    "resume",
    "retry",
    "stuck_signatures",
    "submit",
]

_ADAPTER_GROUP = "mageflow.adapters"


def __getattr__(name: str) -> Any:
    # The client lives in an adapter package so that core never imports an
    # engine SDK; it is looked up only when someone asks for it.
    if name == "Mageflow":
        found = list(entry_points(group=_ADAPTER_GROUP))
        if not found:
            raise ConfigurationError(
                "mageflow.Mageflow needs an engine adapter: install mageflow-hatchet "
                "(build it from the MageFlow repository: uv build --all-packages, then "
                "pip install dist/mageflow_hatchet-*.whl; it is not on PyPI)"
            )
        preferred = next((ep for ep in found if ep.name == "hatchet"), found[0])
        value = preferred.load()
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mageflow' has no attribute {name!r}")
