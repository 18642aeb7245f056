"""Older import locations, kept so code written against the older guides still runs.

``mageflow.models.message`` is where the older callbacks guide imports
``ReturnValue`` and ``ContextMessage`` from; the current home of both is
``thirdmagic.message``.
"""

from mageflow.models import message

__all__ = ["message"]
