"""The Mageflow client: param_config, with_ctx, with_signature, stagger_execution, durable_task.

Needs a Hatchet engine (``HATCHET_CLIENT_*``) and Redis (``REDIS_URL``):

    uv run python docs/examples/client_options.py worker
    uv run python docs/examples/client_options.py run

Used by docs/api/client.md; run by tests/e2e/test_docs_examples.py.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from typing import Any

from hatchet_sdk import Context, Hatchet
from mageflow import AcceptParams, Mageflow, SignatureStatus, TaskSignature
from pydantic import BaseModel

REDIS_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
hatchet = Hatchet()

# NO_CTX (the default): task functions receive the message only
mf = Mageflow(hatchet, redis_client=REDIS_URL, param_config=AcceptParams.NO_CTX)


class Report(BaseModel):
    report_id: int
    pages: int = 1


@mf.task(name="render-report", input_validator=Report)
async def render_report(msg: Report) -> dict[str, Any]:
    return {"report_id": msg.report_id, "pages": msg.pages}


@mf.task(name="report-with-ctx", input_validator=Report)
@mf.with_ctx  # this task gets the Hatchet Context although the client says NO_CTX
async def report_with_ctx(msg: Report, ctx: Context) -> dict[str, Any]:
    return {"report_id": msg.report_id, "attempt": ctx.attempt_number}


@mf.task(name="report-with-signature", input_validator=Report)
@mf.with_signature  # the task's own TaskSignature, as keyword `signature`
async def report_with_signature(msg: Report, signature: TaskSignature | None) -> dict[str, Any]:
    # None when the task was run directly through Hatchet, not from a signature
    return {"key": signature.key if signature else None}


@mf.task(name="export-report", input_validator=Report, execution_timeout=timedelta(seconds=30))
@mf.with_ctx
@mf.with_signature
@mf.stagger_execution(wait_delta=timedelta(seconds=2))  # random 0-2 s delay before the body
async def export_report(
    msg: Report, ctx: Context, signature: TaskSignature | None
) -> dict[str, Any]:
    return {"report_id": msg.report_id, "run": ctx.workflow_run_id}


@mf.durable_task(name="archive-report", input_validator=Report)
async def archive_report(msg: Report) -> dict[str, Any]:
    return {"archived": msg.report_id}


# ALL: every task of this client receives (message, ctx). One client per process
# is the usual setup; a second one here only shows the option.
mf_all = Mageflow(hatchet, redis_client=REDIS_URL, param_config=AcceptParams.ALL)


@mf_all.task(name="report-all-params", input_validator=Report)
async def report_all_params(msg: Report, ctx: Context) -> dict[str, Any]:
    return {"report_id": msg.report_id, "retry_count": ctx.retry_count}


TASKS = [
    render_report,
    report_with_ctx,
    report_with_signature,
    export_report,
    archive_report,
    report_all_params,
]


async def main() -> None:
    # Sign through the client (the same as mageflow.asign) and run every task
    signatures = [await mf.asign(task, pages=3) for task in TASKS]
    for i, sig in enumerate(signatures):
        await sig.aio_run_no_wait(Report(report_id=i))
    async with asyncio.timeout(90):
        for sig in signatures:
            while True:  # the worker updates the signature in Redis; poll it
                loaded = await mf.load_signature(sig.key)
                if loaded.status == SignatureStatus.DONE:
                    break
                await asyncio.sleep(0.2)
            print(f"{loaded.task_name}: {loaded.status}")

    # The Mageflow client is also the Hatchet client: a direct run returns the plain result
    direct = await report_with_signature.aio_run(Report(report_id=7))
    assert direct == {"key": None}
    assert (await report_with_ctx.aio_run(Report(report_id=8)))["attempt"] == 1
    workers = await mf.workers.aio_list()  # delegated to hatchet.workers
    print(f"direct runs ok; {len(workers.rows or [])} worker(s) registered")


def serve() -> None:
    mf.worker("client-options-worker", slots=10, workflows=TASKS).start()


if __name__ == "__main__":
    if sys.argv[1:] == ["worker"]:
        serve()
    elif sys.argv[1:] == ["run"]:
        asyncio.run(main())
    else:
        sys.exit("usage: client_options.py worker|run")
