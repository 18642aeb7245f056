"""The dashboard as an ASGI app (Starlette).

Reads go through the same views as the CLI (``mageflow._inspect``,
``mageflow._query``); actions through the runtime, like ``mageflow.cancel``.

Security (see docs/operations.md):

* every mutating request needs the action token in the ``X-Mageflow-Token``
  header (compared in constant time). The token is never put in a cookie, so
  a page on another site cannot make the browser send it;
* in addition a mutating request must be JSON, and its ``Origin`` (or
  ``Sec-Fetch-Site``) must say it comes from this dashboard: a cross-site
  form or fetch is refused before the token is even looked at;
* ``read_only`` refuses every action;
* responses forbid framing and inline scripts (a strict CSP).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from mageflow import _inspect, _query
from mageflow._runtime import MageflowRuntime
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from thirdmagic.errors import (
    InvalidTransitionError,
    MageflowError,
    MageflowValidationError,
    SignatureLockedError,
    SignatureNotFoundError,
    StoreError,
)
from thirdmagic.status import LifecycleEvent

__all__ = ["ACTIONS", "create_app"]

ACTIONS = ("suspend", "resume", "interrupt", "cancel", "retry")
_STATIC = resources.files("mageflow_dashboard").joinpath("static")
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def _status_for(exc: MageflowError) -> int:
    if isinstance(exc, SignatureNotFoundError):
        return 404
    if isinstance(exc, (InvalidTransitionError, SignatureLockedError)):
        return 409
    if isinstance(exc, MageflowValidationError):
        return 400
    if isinstance(exc, StoreError):
        return 503
    return 502


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": _CSP,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


def create_app(
    runtime: MageflowRuntime,
    *,
    token: str,
    read_only: bool = False,
    hatchet_url: str | None = None,
    refresh_interval: float = 5.0,
) -> Starlette:
    """The dashboard for ``runtime``'s store. ``token`` authorises actions."""
    if not read_only and len(token) < 16:
        raise MageflowValidationError(
            "token: use at least 16 characters (or read_only=True)", field="token"
        )

    def static(name: str) -> Response:
        path = _STATIC.joinpath(name)
        suffix = name[name.rfind(".") :]
        return Response(
            path.read_bytes(), media_type=_TYPES.get(suffix, "text/plain"), headers=_headers()
        )

    async def page_index(request: Request) -> Response:
        return static("index.html")

    async def page_flow(request: Request) -> Response:
        return static("flow.html")

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ("app.js", "style.css"):
            return _error(404, f"no asset {name!r}")
        return static(name)

    async def config(request: Request) -> Response:
        return JSONResponse(
            {"read_only": read_only, "hatchet_url": hatchet_url, "actions": list(ACTIONS)},
            headers=_headers(),
        )

    async def flows(request: Request) -> Response:
        q = request.query_params
        try:
            limit = int(q.get("limit", "50"))
        except ValueError:
            return _error(400, "limit: expected an integer")
        idents = [i for i in q.getlist("identifier") if i]
        status = q.get("status") or None
        task = q.get("task") or None
        try:
            sigs = await _query.list_signatures(
                runtime.store,
                status=status,
                task=task,
                identifiers=idents or None,
                roots=q.get("all") != "1" and not (status or task or idents),
                limit=limit,
            )
        except MageflowError as exc:
            return _error(_status_for(exc), str(exc))
        rows = [
            {
                "key": s.key,
                "kind": getattr(s, "kind", "task"),
                "task_name": s.task_name,
                "status": s.status.value,
                "created": s.creation_time.isoformat(),
                "task_identifiers": s.task_identifiers,
            }
            for s in sigs
        ]
        return JSONResponse(rows, headers=_headers())

    async def tree(request: Request) -> Response:
        try:
            return JSONResponse(
                await _inspect.flow_tree(runtime, request.path_params["key"]), headers=_headers()
            )
        except MageflowError as exc:
            return _error(_status_for(exc), str(exc))

    async def describe(request: Request) -> Response:
        try:
            info = await _inspect.describe(runtime, request.path_params["key"])
        except MageflowError as exc:
            return _error(_status_for(exc), str(exc))
        return JSONResponse(json.loads(json.dumps(info, default=str)), headers=_headers())

    async def events(request: Request) -> Response:
        key = request.path_params["key"]

        async def stream() -> AsyncIterator[str]:
            last = None
            while True:
                # pushed on every status change of a shown signature (one
                # pub/sub connection per open page), re-read at the latest
                # every refresh_interval
                trees = _inspect.watch_tree(runtime, key, interval=refresh_interval)
                try:
                    async with contextlib.aclosing(trees):
                        async for tree in trees:
                            body = json.dumps(tree, default=str)
                            if body != last:
                                yield f"data: {body}\n\n"
                                last = body
                            else:
                                yield ": keep-alive\n\n"
                            if await request.is_disconnected():
                                return
                except MageflowError as exc:
                    # gone (removed, expired): say so, then look again later
                    body = json.dumps({"error": str(exc)})
                    if body != last:
                        yield f"data: {body}\n\n"
                        last = body
                    if await request.is_disconnected():
                        return
                    await asyncio.sleep(refresh_interval)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={**_headers(), "X-Accel-Buffering": "no"},
        )

    def _same_origin(request: Request) -> bool:
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return False
        origin = request.headers.get("origin")
        if origin is None:
            return site is not None  # a browser sends one of the two on a POST
        host = request.headers.get("host", "")
        return origin in (f"http://{host}", f"https://{host}")

    async def act(request: Request) -> Response:
        if read_only:
            return _error(403, "the dashboard is read-only")
        if not _same_origin(request):
            return _error(403, "cross-site request refused")
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _error(415, "actions must be sent as application/json")
        given = request.headers.get("x-mageflow-token", "")
        if not hmac.compare_digest(given.encode(), token.encode()):
            return _error(401, "missing or wrong action token")
        action = request.path_params["action"]
        key = request.path_params["key"]
        if action not in ACTIONS:
            return _error(404, f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
        try:
            body: Any = await request.json()
        except ValueError:
            return _error(400, "body: expected a JSON object")
        if not isinstance(body, dict):
            return _error(400, "body: expected a JSON object")
        try:
            if action == "cancel":
                status = await runtime.cancel(
                    key, error_callbacks=bool(body.get("error_callbacks"))
                )
            elif action == "retry":
                status = await runtime.retry(key)
            else:
                status = await runtime.apply(key, LifecycleEvent(action))
        except MageflowError as exc:
            return _error(_status_for(exc), str(exc))
        return JSONResponse({"key": key, "status": status.status.value}, headers=_headers())

    routes = [
        Route("/", page_index),
        Route("/flow/{key:path}", page_flow),
        Route("/static/{name}", asset),
        Route("/api/config", config),
        Route("/api/flows", flows),
        Route("/api/flows/{key}/tree", tree),
        Route("/api/flows/{key}/events", events),
        Route("/api/signatures/{key}", describe),
        Route("/api/signatures/{key}/{action}", act, methods=["POST"]),
    ]
    return Starlette(routes=routes)
