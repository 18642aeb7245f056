"""MageFlow's web dashboard: ``mageflow dashboard`` (see docs/operations.md)."""

from mageflow_dashboard.app import ACTIONS, create_app
from mageflow_dashboard.server import serve

__all__ = ["ACTIONS", "create_app", "serve"]
