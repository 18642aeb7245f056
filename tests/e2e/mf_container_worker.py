"""Worker subprocess for the container e2e tests: serves one group of ``mf_container_app``.

Env: the Hatchet client variables, ``REDIS_URL``, ``MAGEFLOW_E2E_PREFIX`` and
``MAGEFLOW_E2E_GROUP`` (``main`` or ``crash``, see ``mf_container_app.GROUPS``).
"""

from __future__ import annotations

import logging
import os

from hatchet_sdk import Hatchet

from tests.e2e.mf_container_app import ContainerApp


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    group = os.environ.get("MAGEFLOW_E2E_GROUP", "main")
    app = ContainerApp(Hatchet(), os.environ["REDIS_URL"], os.environ["MAGEFLOW_E2E_PREFIX"])
    worker = app.mf.worker(
        f"mageflow-e2e-containers-{group}",
        slots=int(os.environ.get("MAGEFLOW_E2E_SLOTS", "20")),
        workflows=list(app.groups[group].values()),
    )
    worker.start()


if __name__ == "__main__":
    main()
