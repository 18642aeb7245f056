"""Waiting for a signature or a whole flow to reach its end."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from thirdmagic.errors import SignatureNotFoundError
from thirdmagic.signature import Signature
from thirdmagic.status import TERMINAL_STATUSES, SignatureStatus

from mageflow._api import get_runtime
from mageflow._runtime import MageflowRuntime

__all__ = ["wait_for_signature"]


async def wait_for_signature(
    key: str,
    *,
    statuses: Collection[SignatureStatus] = TERMINAL_STATUSES,
    timeout: float = 30.0,
    poll: float = 0.05,
    runtime: MageflowRuntime | None = None,
) -> Signature:
    """Poll ``key`` until its status is one of ``statuses`` (default: done, failed, canceled).

    For a chain or swarm this is the end of the whole flow: a container settles
    only after its members. Raises ``TimeoutError`` naming the last status
    seen, and ``SignatureNotFoundError`` if the signature disappears.
    """
    rt = runtime or get_runtime()
    last: Signature | None = None
    try:
        async with asyncio.timeout(timeout):
            while True:
                last = await rt.load(key)
                if last is None:
                    raise SignatureNotFoundError(key)
                if last.status in statuses:
                    return last
                await asyncio.sleep(poll)
    except TimeoutError:
        seen = last.status.value if last is not None else "nothing"
        wanted = ", ".join(sorted(s.value for s in statuses))
        raise TimeoutError(
            f"signature {key!r} did not reach {wanted} in {timeout:.1f}s (last status: {seen})"
        ) from None
