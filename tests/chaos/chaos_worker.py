"""Worker subprocess of the fault-injection suite: serves every task of ``chaos_app``.

Env: the Hatchet client variables, ``REDIS_URL`` (the chaos valkey),
``CHAOS_OBSERVER_URL``, ``CHAOS_PREFIX``, optionally ``CHAOS_SUFFIX`` (of the
task names, so harnesses run at once) and ``MAGEFLOW_TEST_CRASH``
/ ``MAGEFLOW_TEST_CRASH_ONCE_DIR`` (mageflow._crash).
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta

from hatchet_sdk import Hatchet

from tests.chaos.chaos_app import ChaosApp


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    app = ChaosApp(
        Hatchet(),
        os.environ["REDIS_URL"],
        os.environ["CHAOS_OBSERVER_URL"],
        os.environ["CHAOS_PREFIX"],
        lost_worker_attempts=int(os.environ.get("CHAOS_LOST_WORKER_ATTEMPTS", "3")),
        suffix=os.environ.get("CHAOS_SUFFIX", ""),
    )
    worker = app.mf.worker(
        f"mageflow-chaos{app.suffix}",
        slots=20,
        workflows=list(app.tasks.values()),
        recover_every=timedelta(seconds=1),
        recover_after=timedelta(seconds=5),
    )
    worker.start()


if __name__ == "__main__":
    main()
