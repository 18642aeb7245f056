"""Serving the dashboard: ``mageflow dashboard`` calls :func:`serve`."""

from __future__ import annotations

import ipaddress
import secrets
from typing import TextIO
from urllib.parse import quote

import uvicorn
from mageflow._runtime import MageflowRuntime

from mageflow_dashboard.app import create_app

__all__ = ["serve"]


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve(
    runtime: MageflowRuntime,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    read_only: bool = False,
    hatchet_url: str | None = None,
    out: TextIO,
    flow: str | None = None,
) -> None:
    """Serve until interrupted. Prints the URL (with the action token) to ``out``."""
    token = token or secrets.token_urlsafe(24)
    app = create_app(runtime, token=token, read_only=read_only, hatchet_url=hatchet_url)
    shown = f"[{host}]" if ":" in host else host
    if not _loopback(host):
        print(
            f"warning: listening on {host}, not on a loopback address: anyone who can reach "
            "this port sees every flow; put it behind TLS and an authenticating proxy",
            file=out,
        )
    mode = "read-only" if read_only else "actions need the token in the URL below"
    print(f"MageFlow dashboard ({mode}):", file=out)
    query = "" if read_only else f"?token={token}"
    print(f"  http://{shown}:{port}/{query}", file=out)
    if flow:
        print(f"  flow {flow}: http://{shown}:{port}/flow/{quote(flow)}{query}", file=out)
    out.flush()
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    )
    await server.serve()
