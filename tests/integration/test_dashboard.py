"""The web dashboard: its API (token, CSRF, read-only) and the page in a real browser.

The browser test drives Debian's chromium (installed by .ci/run) through
Playwright against real Redis and a running flow (in-memory engine).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import mageflow
import pytest
import uvicorn
from mageflow import MageflowRuntime
from mageflow.inmemory import InMemoryTaskManager
from mageflow_dashboard import create_app
from pydantic import BaseModel

from tests.integration._helpers import Raw, eventually

pytestmark = pytest.mark.usefixtures("runtime")

TOKEN = "t0ken-for-the-dashboard-tests"
CHROMIUM = os.environ.get("MAGEFLOW_CHROMIUM", "/usr/bin/chromium")
SCREENSHOT = os.environ.get("MAGEFLOW_DASHBOARD_SCREENSHOT")  # docs/images/... to refresh docs


class Num(BaseModel):
    n: int


class Gates:
    def __init__(self) -> None:
        self.events: dict[int, asyncio.Event] = {}

    def __getitem__(self, n: int) -> asyncio.Event:
        return self.events.setdefault(n, asyncio.Event())


@pytest.fixture
def gates(manager: InMemoryTaskManager) -> Gates:
    g = Gates()

    @manager.task("resize-image", input_validator=Num)
    async def resize(msg: Num) -> int:
        await g[msg.n].wait()
        return msg.n

    @manager.task("notify", input_validator=Num)
    async def notify(msg: Num) -> None:
        return None

    return g


def _client(runtime: MageflowRuntime, **kw: Any) -> httpx.AsyncClient:
    app = create_app(runtime, token=TOKEN, **kw)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")


SAME = {"Origin": "http://127.0.0.1", "Content-Type": "application/json"}


async def test_api_lists_and_describes(runtime: MageflowRuntime, gates: Gates) -> None:
    sig = await mageflow.asign("notify", task_identifiers={"order": 1042})
    async with _client(runtime) as c:
        rows = (await c.get("/api/flows", params={"identifier": "order=1042"})).json()
        assert [r["key"] for r in rows] == [sig.key]
        info = (await c.get(f"/api/signatures/{sig.key}")).json()
        assert info["task_name"] == "notify" and info["status"] == "pending"
        tree = (await c.get(f"/api/flows/{sig.key}/tree")).json()
        assert tree["key"] == sig.key
        assert (await c.get("/api/signatures/nope")).status_code == 404
        assert (await c.get("/api/flows", params={"status": "bogus"})).status_code == 400
        page = await c.get("/")
        assert "Content-Security-Policy" in page.headers and "MageFlow" in page.text
        assert (await c.get("/static/app.js")).headers["content-type"].startswith("text/javascript")
        assert (await c.get("/static/../app.py")).status_code == 404


async def test_actions_need_token_same_origin_and_json(
    runtime: MageflowRuntime, gates: Gates, raw: Raw
) -> None:
    sig = await mageflow.asign("notify")
    url = f"/api/signatures/{sig.key}/suspend"
    async with _client(runtime) as c:
        r = await c.post(url, headers=SAME, content="{}")
        assert r.status_code == 401
        r = await c.post(url, headers={**SAME, "X-Mageflow-Token": "wrong"}, content="{}")
        assert r.status_code == 401
        evil = {**SAME, "Origin": "http://evil.example", "X-Mageflow-Token": TOKEN}
        assert (await c.post(url, headers=evil, content="{}")).status_code == 403
        cross = {**SAME, "Sec-Fetch-Site": "cross-site", "X-Mageflow-Token": TOKEN}
        assert (await c.post(url, headers=cross, content="{}")).status_code == 403
        form = {
            "Origin": "http://127.0.0.1",
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Mageflow-Token": TOKEN,
        }
        assert (await c.post(url, headers=form, content="a=1")).status_code == 415
        assert await raw.status(sig.key) == "pending"  # nothing changed so far
        ok = {**SAME, "X-Mageflow-Token": TOKEN}
        r = await c.post(url, headers=ok, content="{}")
        assert r.status_code == 200 and r.json() == {"key": sig.key, "status": "suspended"}
        assert await raw.status(sig.key) == "suspended"
        r = await c.post(f"/api/signatures/{sig.key}/retry", headers=ok, content="{}")
        assert r.status_code == 409
        r = await c.post(f"/api/signatures/{sig.key}/explode", headers=ok, content="{}")
        assert r.status_code == 404
        r = await c.post("/api/signatures/nope/cancel", headers=ok, content="{}")
        assert r.status_code == 404


async def test_read_only_refuses_actions(runtime: MageflowRuntime, gates: Gates, raw: Raw) -> None:
    sig = await mageflow.asign("notify")
    async with _client(runtime, read_only=True) as c:
        assert (await c.get("/api/config")).json()["read_only"] is True
        r = await c.post(
            f"/api/signatures/{sig.key}/cancel",
            headers={**SAME, "X-Mageflow-Token": TOKEN},
            content="{}",
        )
        assert r.status_code == 403
    assert await raw.status(sig.key) == "pending"


async def test_short_token_is_refused(runtime: MageflowRuntime) -> None:
    with pytest.raises(mageflow.MageflowValidationError):
        create_app(runtime, token="short")


# -- in a real browser ----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def server(runtime: MageflowRuntime) -> AsyncIterator[str]:
    port = _free_port()
    app = create_app(
        runtime,
        token=TOKEN,
        refresh_interval=60.0,  # live updates must come from notifications
        hatchet_url="http://hatchet.local/t/1/runs/{run_id}?x=1",
    )
    srv = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(srv.serve())
    await eventually(_started(srv), what="dashboard server started")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        await asyncio.wait_for(task, 10)


def _started(srv: uvicorn.Server) -> Any:
    async def check() -> bool:
        return bool(srv.started)

    return check


def _need_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    message = f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


async def test_flow_page_shows_a_running_swarm_live_and_acts(
    server: str, gates: Gates, raw: Raw, tmp_path: Path
) -> None:
    _need_chromium()
    from playwright.async_api import async_playwright, expect

    done = await mageflow.asign("notify")
    sw = await mageflow.aswarm(
        config=mageflow.SwarmConfig(max_concurrency=2),
        success_callbacks=[done],
        task_identifiers={"batch": 7},
    )
    members = await sw.aio_run_tasks_in_swarm(["resize-image"] * 4, [Num(n=i) for i in range(4)])
    await sw.close_swarm()
    await sw.aio_run_no_wait({})

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            # the flows list finds it by identifier
            await page.goto(f"{server}/?token={TOKEN}")
            assert "token" not in page.url  # taken out of the address bar
            await page.fill("#f-identifier", "batch=7")
            await page.click("button[type=submit]")
            await expect(page.locator(f"tr[data-key='{sw.key}']")).to_be_visible()
            await page.click(f"tr[data-key='{sw.key}'] a")

            # the flow page: the swarm, its members and its callback
            root = page.locator(f".node[data-key='{sw.key}']")
            counter = root.locator("[data-testid=counter]").first
            await expect(counter).to_contain_text("0/4 done · 2 running · 2 queued")
            for m in members:
                await expect(page.locator(f".node[data-key='{m}']")).to_be_visible()
            await expect(page.locator(f".node[data-key='{done.key}']")).to_be_visible()
            await expect(page.locator("#live")).to_have_text("live")

            # the counter moves as members finish, without a reload
            gates[0].set()
            await expect(counter).to_contain_text("1/4 done")
            gates[1].set()
            await expect(counter).to_contain_text("2/4 done · 2 running · 0 queued")
            await expect(page.locator(f".node[data-key='{members[0]}']")).to_have_attribute(
                "data-status", "done"
            )
            # details of a finished member: its result and its run
            await page.click(f".node[data-key='{members[0]}']")
            await expect(page.locator("dd[data-field=result]")).to_have_text("0")
            await expect(page.locator("dd[data-field=run_id] a")).to_have_attribute(
                "href", f"http://hatchet.local/t/1/runs/{(await raw.hash(members[0]))['r']}?x=1"
            )
            if SCREENSHOT:
                await page.click(f".node[data-key='{sw.key}'] .node-head")
                await page.screenshot(path=SCREENSHOT, full_page=True)

            # an action button changes the status in Redis
            await page.click(f".node[data-key='{sw.key}'] .node-head")
            await page.click("button[data-action=suspend]")
            await expect(page.locator("#message")).to_contain_text("is now suspended")
            await eventually(lambda: _is(raw, sw.key, "suspended"), what="suspended in redis")
            await expect(root.locator("[data-testid=status]").first).to_have_text("suspended")
            await page.click("button[data-action=resume]")
            await eventually(lambda: _is(raw, sw.key, "active"), what="active again")
            await page.screenshot(path=str(tmp_path / "flow.png"))
            assert errors == []
        finally:
            await browser.close()
    gates[2].set()
    gates[3].set()
    assert await sw.aio_result(timeout=10) == [0, 1, 2, 3]


async def _is(raw: Raw, key: str, status: str) -> bool:
    return await raw.status(key) == status


async def test_page_without_token_cannot_act(server: str, gates: Gates, raw: Raw) -> None:
    _need_chromium()
    from playwright.async_api import async_playwright, expect

    sig = await mageflow.asign("notify")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = await browser.new_page()
            await page.goto(f"{server}/flow/{sig.key}")
            await expect(page.locator("#mode")).to_contain_text("no action token")
            await page.click("button[data-action=cancel]")
            await expect(page.locator("#message")).to_contain_text("refused")
        finally:
            await browser.close()
    assert await raw.status(sig.key) == "pending"


async def test_mageflow_dashboard_command_serves_and_prints_the_link(
    redis_url: str, key_prefix: str
) -> None:
    import sys

    sig = await mageflow.asign("notify")
    exe = shutil.which("mageflow", path=os.path.dirname(sys.executable))
    assert exe is not None
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        *[
            exe,
            "dashboard",
            "--redis-url",
            redis_url,
            "--prefix",
            key_prefix,
            "--port",
            str(port),
            "--engine",
            "none",
            "--flow",
            sig.key,
        ],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "MAGEFLOW_TOKEN": TOKEN},
    )
    try:
        assert proc.stdout is not None
        lines = [(await asyncio.wait_for(proc.stdout.readline(), 30)).decode() for _ in range(3)]
        assert f"http://127.0.0.1:{port}/?token={TOKEN}" in lines[1]
        assert f"/flow/{sig.key}?token={TOKEN}" in lines[2]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            for _ in range(50):
                try:
                    r = await c.get(f"/api/signatures/{sig.key}")
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.1)
            assert r.status_code == 200 and r.json()["key"] == sig.key
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
