"""MageFlow for Hatchet: the ``Mageflow`` client and ``HatchetTaskManager``."""

from mageflow_hatchet._errors import ExecutionTimeoutError
from mageflow_hatchet.client import HatchetMageflow, Mageflow
from mageflow_hatchet.manager import HatchetTaskManager

__all__ = ["ExecutionTimeoutError", "HatchetMageflow", "HatchetTaskManager", "Mageflow"]
