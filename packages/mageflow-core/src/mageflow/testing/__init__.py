"""Testing with MageFlow: helpers for your flows, and a conformance kit for adapters.

For your own tests (no engine needed, a real Redis is):

* :class:`InMemoryFlow` — a runtime on the in-memory engine, activated for the
  test; the pytest plugin ``mageflow.testing.plugin`` provides it as the
  ``mageflow_in_memory`` fixture.
* :func:`wait_for_signature` — wait until a signature, or a whole chain or
  swarm, has ended.
* :class:`FaultyTaskManager` with :class:`Faults` — deterministic faults:
  every run delivered twice, a crash after step k.

For adapter authors: ``mageflow.testing.conformance.TaskManagerConformance``
(needs pytest), run against your adapter (docs/adapters.md).
"""

from __future__ import annotations

from mageflow.testing._flow import InMemoryFlow
from mageflow.testing._wait import wait_for_signature
from mageflow.testing.faults import Faults, FaultyTaskManager, SimulatedCrash

__all__ = ["Faults", "FaultyTaskManager", "InMemoryFlow", "SimulatedCrash", "wait_for_signature"]
