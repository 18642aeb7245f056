"""MageFlow: persistent task signatures, callbacks and lifecycle control.

``import mageflow`` gives the engine-independent API. ``mageflow.Mageflow``,
the client for an engine, comes from an installed adapter package
(``mageflow-hatchet``), found through the ``mageflow.adapters`` entry point.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from thirdmagic import (
    AcceptParams,
    ChainSignature,
    ConfigurationError,
    EngineError,
    FlowSpec,
    InvalidTransitionError,
    LockLostError,
    MageflowError,
    MageflowValidationError,
    NotFoundError,
    PauseActionTypes,
    ReturnValue,
    Signature,
    SignatureLockedError,
    SignatureNotFoundError,
    SignatureStatus,
    StoreError,
    SwarmClosedError,
    SwarmConfig,
    SwarmFullError,
    SwarmSignature,
    TaskSignature,
    TaskStatus,
)

from mageflow._api import (
    achain,
    asign,
    aswarm,
    chain,
    configure,
    get_runtime,
    load_signature,
    lock_task,
    pause,
    recover,
    remove,
    resume,
    resume_task,
    sign,
    submit,
    swarm,
)
from mageflow._runtime import MageflowRuntime, RunOutcome, RunRequest
from mageflow.config import MageflowConfig
from mageflow.manager import (
    CancelRequest,
    DescribeRequest,
    DispatchRequest,
    DispatchResult,
    TaskDescription,
    TaskManager,
)

__all__ = [
    "AcceptParams",
    "CancelRequest",
    "ChainSignature",
    "ConfigurationError",
    "DescribeRequest",
    "DispatchRequest",
    "DispatchResult",
    "EngineError",
    "FlowSpec",
    "InvalidTransitionError",
    "LockLostError",
    "MageflowConfig",
    "MageflowError",
    "MageflowRuntime",
    "MageflowValidationError",
    "NotFoundError",
    "PauseActionTypes",
    "ReturnValue",
    "RunOutcome",
    "RunRequest",
    "Signature",
    "SignatureLockedError",
    "SignatureNotFoundError",
    "SignatureStatus",
    "StoreError",
    "SwarmClosedError",
    "SwarmConfig",
    "SwarmFullError",
    "SwarmSignature",
    "TaskDescription",
    "TaskManager",
    "TaskSignature",
    "TaskStatus",
    "achain",
    "asign",
    "aswarm",
    "chain",
    "configure",
    "get_runtime",
    "load_signature",
    "lock_task",
    "pause",
    "recover",
    "remove",
    "resume",
    "resume_task",
    "sign",
    "submit",
    "swarm",
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
