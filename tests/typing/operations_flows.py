"""User code from docs/operations.md: passes ``mypy --strict`` and pyright, no casts or ignores.

Never run; type-checked by ``tests/unit/test_typing.py`` (and ``.ci/run``).
"""

from __future__ import annotations

from typing import Any, assert_type

import mageflow
from mageflow import (
    ChainSignature,
    ContainerProgress,
    ErrorDetails,
    ErrorInfo,
    ResultTimeoutError,
    Signature,
    SignatureCanceledError,
    SignatureFailedError,
    StuckSignature,
    SwarmSignature,
    TaskSignature,
    TaskStatus,
)
from pydantic import BaseModel


class Resize(BaseModel):
    image_id: int


class ResizeFailed(BaseModel):
    image_id: int
    error: ErrorInfo[ErrorDetails | None] = None


def error_message(msg: ResizeFailed) -> str:
    assert_type(msg.error, ErrorDetails | None)
    return msg.error.message if msg.error is not None else ""


async def outcomes(sig: TaskSignature, chain: ChainSignature, swarm: SwarmSignature) -> None:
    assert_type(await sig.aio_run(Resize(image_id=1), timeout=10), Any)
    try:
        await mageflow.result(sig.key, timeout=5, poll_interval=1.0)
    except SignatureCanceledError as exc:
        assert_type(exc.status, str)
    except SignatureFailedError as exc:
        assert_type(exc.error, ErrorDetails | None)
    except ResultTimeoutError as exc:
        assert_type(exc.timeout, float)
    assert_type(sig.error, ErrorDetails | None)

    assert_type(await mageflow.cancel(sig.key, error_callbacks=True), TaskStatus)
    await sig.cancel()
    assert_type(await mageflow.retry(sig.key), TaskStatus)
    await sig.retry()

    assert_type(await sig.clone(), TaskSignature)
    assert_type(await chain.clone(kwargs={"n": 1}), ChainSignature)
    assert_type(await swarm.progress(), ContainerProgress)
    assert_type(await chain.progress(), ContainerProgress)
    assert_type(await mageflow.progress(chain.key), ContainerProgress)

    found = await mageflow.list_signatures(status="failed", identifiers={"order_id": 1042})
    assert_type(found, list[Signature])
    stuck = await mageflow.stuck_signatures()
    assert_type(stuck, list[StuckSignature])
