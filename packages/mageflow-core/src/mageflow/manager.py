"""Compatibility alias of :mod:`mageflow.engine`, the adapter contract."""

from mageflow.engine import (
    DISPATCH_ID_META,
    SIGNATURE_KEY_META,
    TASK_META,
    CancelRequest,
    DescribeRequest,
    DispatchRequest,
    DispatchResult,
    TaskDescription,
    TaskManager,
)

__all__ = [
    "DISPATCH_ID_META",
    "SIGNATURE_KEY_META",
    "TASK_META",
    "CancelRequest",
    "DescribeRequest",
    "DispatchRequest",
    "DispatchResult",
    "TaskDescription",
    "TaskManager",
]
