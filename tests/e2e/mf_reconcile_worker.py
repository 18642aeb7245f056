"""Worker subprocess of tests/e2e/test_reconcile.py: serves ``mf_reconcile_app``,
reconciling every second (what went quiet for 4 s).

Env: the Hatchet client variables, ``REDIS_URL``, ``MAGEFLOW_E2E_PREFIX`` and
``MAGEFLOW_E2E_GROUP``: ``main`` serves every task but those in ``DOOMED``,
``doomed`` serves only ``DOOMED`` (a worker a test SIGKILLs).
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta

from hatchet_sdk import Hatchet

from tests.e2e.mf_reconcile_app import ReconcileApp

DOOMED = {"e2e-rc-doomed", "e2e-rc-resent"}


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    app = ReconcileApp(Hatchet(), os.environ["REDIS_URL"], os.environ["MAGEFLOW_E2E_PREFIX"])
    doomed = os.environ.get("MAGEFLOW_E2E_GROUP") == "doomed"
    tasks = [t for t in app.tasks if (t.name in DOOMED) == doomed]
    app.mf.worker(
        f"mageflow-e2e-reconcile-{'doomed' if doomed else 'main'}",
        slots=20,
        workflows=tasks,
        recover_every=timedelta(seconds=1),
        recover_after=timedelta(seconds=4),
    ).start()


if __name__ == "__main__":
    main()
