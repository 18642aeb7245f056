"""thirdmagic: backend-agnostic models for MageFlow task signatures.

Pure data: signatures, statuses and the lifecycle table, ``ReturnValue``, and
the error hierarchy. No I/O and no dependency beyond pydantic.
"""

from thirdmagic.backend import SignatureBackend, get_backend, set_backend
from thirdmagic.errors import (
    ConfigurationError,
    EngineError,
    InvalidTransitionError,
    MageflowError,
    MageflowValidationError,
    NotFoundError,
    ResultTimeoutError,
    SignatureCanceledError,
    SignatureFailedError,
    SignatureLockedError,
    SignatureNotFoundError,
    StoreError,
    SwarmClosedError,
    SwarmFullError,
)
from thirdmagic.message import (
    DEFAULT_RESULTS_FIELD,
    LEGACY_RESULTS_FIELD,
    ReturnValue,
    inject_return_value,
    resolve_return_field,
)
from thirdmagic.outcome import (
    MAX_TRACEBACK_CHARS,
    ContainerProgress,
    ErrorDetails,
    ErrorInfo,
    resolve_error_field,
)
from thirdmagic.params import AcceptParams
from thirdmagic.signature import (
    AnySignature,
    ChainSignature,
    Signature,
    SignatureKwargs,
    SwarmConfig,
    SwarmSignature,
    TaskSignature,
    import_model,
    model_import_path,
    to_json_value,
)
from thirdmagic.status import (
    PREVIOUS,
    TERMINAL_STATUSES,
    TRANSITIONS,
    LifecycleEvent,
    PauseActionTypes,
    SignatureStatus,
    TaskStatus,
    next_status,
)

__all__ = [
    "DEFAULT_RESULTS_FIELD",
    "LEGACY_RESULTS_FIELD",
    "MAX_TRACEBACK_CHARS",
    "PREVIOUS",
    "TERMINAL_STATUSES",
    "TRANSITIONS",
    "AcceptParams",
    "AnySignature",
    "ChainSignature",
    "ConfigurationError",
    "ContainerProgress",
    "EngineError",
    "ErrorDetails",
    "ErrorInfo",
    "InvalidTransitionError",
    "LifecycleEvent",
    "MageflowError",
    "MageflowValidationError",
    "NotFoundError",
    "PauseActionTypes",
    "ResultTimeoutError",
    "ReturnValue",
    "Signature",
    "SignatureBackend",
    "SignatureCanceledError",
    "SignatureFailedError",
    "SignatureKwargs",
    "SignatureLockedError",
    "SignatureNotFoundError",
    "SignatureStatus",
    "StoreError",
    "SwarmClosedError",
    "SwarmConfig",
    "SwarmFullError",
    "SwarmSignature",
    "TaskSignature",
    "TaskStatus",
    "get_backend",
    "import_model",
    "inject_return_value",
    "model_import_path",
    "next_status",
    "resolve_error_field",
    "resolve_return_field",
    "set_backend",
    "to_json_value",
]
