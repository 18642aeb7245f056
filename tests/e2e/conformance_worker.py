"""Worker subprocess serving mageflow.testing's conformance tasks on Hatchet.

Env: the Hatchet client variables, ``REDIS_URL`` and ``MAGEFLOW_E2E_PREFIX``.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta

from hatchet_sdk import Hatchet
from mageflow import MageflowConfig
from mageflow.testing.conformance_tasks import CONFORMANCE_TASKS
from mageflow_hatchet import Mageflow


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    mf = Mageflow(
        Hatchet(),
        os.environ["REDIS_URL"],
        config=MageflowConfig(key_prefix=os.environ["MAGEFLOW_E2E_PREFIX"]),
    )
    tasks = [
        mf.task(
            name=spec.name,
            input_validator=spec.input_model,
            retries=spec.retries,
            execution_timeout=timedelta(seconds=90),
        )(spec.fn)
        for spec in CONFORMANCE_TASKS
    ]
    mf.worker("mageflow-conformance", slots=20, workflows=tasks, recover_every=None).start()


if __name__ == "__main__":
    main()
