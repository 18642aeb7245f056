"""The public surface of each package, pinned (as httpx's test_exported_members does).

Changing a list here is a deliberate API change. Aliases (legacy names) stay
importable but are not in ``__all__``; they are listed separately.
"""

from __future__ import annotations

import importlib

import pytest

EXPORTED = {
    "thirdmagic": [
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
        "DispatchPendingError",
        "DispatchRefusedError",
        "ContainerProgress",
        "ContextMessage",
        "EngineError",
        "ErrorDetails",
        "ErrorInfo",
        "FlowSpec",
        "InvalidTransitionError",
        "LifecycleEvent",
        "LockLostError",
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
        "StoreUnavailableError",
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
    ],
    "mageflow": [
        "AcceptParams",
        "BulkValidationError",
        "ChainSignature",
        "ConfigurationError",
        "DispatchPendingError",
        "DispatchRefusedError",
        "ContainerProgress",
        "EngineError",
        "ErrorDetails",
        "ErrorInfo",
        "FlowSpec",
        "InvalidTransitionError",
        "LockLostError",
        "MageflowConfig",
        "MageflowError",
        "MageflowRuntime",
        "ReconcileReport",
        "MageflowValidationError",
        "NonRetryable",
        "NotFoundError",
        "PauseActionTypes",
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
        "reconcile",
        "progress",
        "recover",
        "remove",
        "result",
        "resume",
        "retry",
        "stuck_signatures",
        "submit",
    ],
    "mageflow.engine": [
        "DISPATCH_ID_META",
        "REFERENCE_TAG",
        "SIGNATURE_KEY_META",
        "TASK_META",
        "CancelRequest",
        "DescribeRequest",
        "DispatchRequest",
        "DispatchResult",
        "NonRetryable",
        "RunBody",
        "RunOutcome",
        "RunRequest",
        "RunState",
        "RunStatusRequest",
        "RunStatusResult",
        "TaskDescription",
        "TaskManager",
        "holds_reference",
    ],
    "mageflow.testing": [
        "FaultyTaskManager",
        "Faults",
        "InMemoryFlow",
        "SimulatedCrash",
        "wait_for_signature",
    ],
    "mageflow_hatchet": [
        "ExecutionTimeoutError",
        "HatchetMageflow",
        "HatchetTaskManager",
        "Mageflow",
    ],
}

# name -> what it is an alias of (importable, documented, outside __all__)
ALIASES = {
    "mageflow": {
        "sign": "asign",
        "chain": "achain",
        "swarm": "aswarm",
        "resume_task": "resume",
        # the adapter contract's home is mageflow.engine
        "TaskManager": "mageflow.engine.TaskManager",
        "CancelRequest": "mageflow.engine.CancelRequest",
        "DescribeRequest": "mageflow.engine.DescribeRequest",
        "DispatchRequest": "mageflow.engine.DispatchRequest",
        "DispatchResult": "mageflow.engine.DispatchResult",
        "TaskDescription": "mageflow.engine.TaskDescription",
        "RunRequest": "mageflow.engine.RunRequest",
        "RunOutcome": "mageflow.engine.RunOutcome",
    },
    "mageflow.inmemory": {"NonRetryableError": "mageflow.engine.NonRetryable"},
}


@pytest.mark.parametrize("module", sorted(EXPORTED))
def test_all_is_pinned(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(EXPORTED[module])
    assert len(set(mod.__all__)) == len(mod.__all__)
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name} is in __all__ but missing"


def _resolve(module: str, target: str) -> object:
    if "." in target:
        owner, _, name = target.rpartition(".")
        return getattr(importlib.import_module(owner), name)
    return getattr(importlib.import_module(module), target)


@pytest.mark.parametrize(
    ("module", "alias", "target"),
    [(m, a, t) for m, names in sorted(ALIASES.items()) for a, t in sorted(names.items())],
)
def test_aliases_stay_importable_and_out_of_all(module: str, alias: str, target: str) -> None:
    mod = importlib.import_module(module)
    assert getattr(mod, alias) is _resolve(module, target)
    assert alias not in mod.__all__


def test_legacy_manager_module_is_the_engine_contract() -> None:
    manager = importlib.import_module("mageflow.manager")
    engine = importlib.import_module("mageflow.engine")
    for name in manager.__all__:
        assert getattr(manager, name) is getattr(engine, name)
