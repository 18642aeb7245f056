"""Worker subprocess for the e2e tests: serves every task of ``mf_app``.

Env: the Hatchet client variables, ``REDIS_URL`` and ``MAGEFLOW_E2E_PREFIX``.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta

from hatchet_sdk import Hatchet

from tests.e2e.mf_app import App


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    app = App(Hatchet(), os.environ["REDIS_URL"], os.environ["MAGEFLOW_E2E_PREFIX"])
    worker = app.mf.worker(
        "mageflow-e2e",
        slots=50,
        workflows=list(app.tasks.values()),
        recover_every=timedelta(seconds=1),
        recover_after=timedelta(seconds=3),
    )
    worker.start()


if __name__ == "__main__":
    main()
