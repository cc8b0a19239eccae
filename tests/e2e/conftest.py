"""Browser tests: real Chromium (the system's, /usr/bin/chromium) driven by Playwright against a real node.

Playwright's own browser download cannot work here, so the system executable is launched; if it is missing the
tests fail in CI (``.ci/run`` installs it) and skip elsewhere. Screenshots go to ``test-output/e2e/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from core.sdk import WsimClient
from tests.support.processes import free_port
from tests.support.server import RunningServer, running_server, settings_for_test
from tests.support.services import unavailable

try:
    import playwright  # noqa: F401 - only checks that the browser-test extra is installed
except ImportError:
    unavailable("playwright is not installed (pip install -e '.[test]')", module=True)

from playwright.async_api import (
    Browser,
    BrowserContext,
    Locator,
    Page,
    async_playwright,
    expect,
)

CHROMIUM = os.environ.get("WSIM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "e2e"
PASSWORD = "password-123"

expect.set_options(timeout=15_000)


@dataclass
class WebServer:
    """A node on a fixed port that a test can stop and start again on the same port and data directory."""

    data_dir: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    running: RunningServer | None = None
    _stack: contextlib.AsyncExitStack | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> RunningServer:
        assert self._stack is None, "already running"
        settings = settings_for_test(self.data_dir, self.overrides)
        stack = contextlib.AsyncExitStack()
        self.running = await stack.enter_async_context(running_server(settings, port=self.port))
        self._stack = stack
        return self.running

    async def stop(self) -> None:
        if self._stack is not None:
            stack, self._stack, self.running = self._stack, None, None
            await stack.aclose()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        unavailable(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
async def web(tmp_path: Path) -> AsyncIterator[WebServer]:
    server = WebServer(tmp_path / "node")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class PageErrors(list[str]):
    """Uncaught page errors and console errors, asserted empty at the end of a test."""


async def new_page(
    browser: Browser,
    errors: PageErrors,
    *,
    context: BrowserContext | None = None,
    viewport: tuple[int, int] = (1280, 820),
) -> Page:
    ctx = context or await browser.new_context(
        viewport={"width": viewport[0], "height": viewport[1]}, locale="zh-CN"
    )
    page = await ctx.new_page()
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    return page


async def register(page: Page, base_url: str, username: str, display_name: str) -> None:
    await page.goto(base_url + "/")
    await page.get_by_test_id("tab-register").click()
    await page.locator("input[name=username]").fill(username)
    await page.locator("input[name=password]").fill(PASSWORD)
    await page.locator("input[name=display_name]").fill(display_name)
    await page.get_by_test_id("submit").click()
    await expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "connected")


async def shot(page: Page, name: str) -> None:
    await expect(page.get_by_test_id("toast")).to_have_count(0)
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"))


def stream_msgs(page: Page) -> Locator:
    return page.get_by_test_id("stream").get_by_test_id("msg")


async def user_id(page: Page) -> str:
    """The id of the user logged in on ``page``."""
    uid = await page.evaluate("JSON.parse(localStorage.getItem('wsim.auth')).user.id")
    return str(uid)


async def befriend_sdk(page: Page, sdk: WsimClient, username: str, display_name: str) -> None:
    """``sdk`` registers, connects and asks the page's user to be friends; the page accepts in its requests list."""
    await sdk.register(username, PASSWORD, display_name)
    await sdk.connect()
    req = await sdk.request("POST", "/api/friends/requests", json={"user_id": await user_id(page)})
    assert req["status"] == "pending"
    await page.get_by_test_id("nav-contacts").click()
    await page.get_by_test_id("sub-requests").click()
    await page.get_by_test_id("request").get_by_test_id("accept").click()


async def befriend(a: Page, b: Page, b_username: str) -> None:
    """a finds b by name and asks; b accepts in the requests list."""
    await a.get_by_test_id("nav-contacts").click()
    await a.get_by_test_id("sub-find").click()
    await a.get_by_test_id("user-search").fill(b_username)
    await a.get_by_test_id("user-search-go").click()
    await a.get_by_test_id("add-friend").click()
    await expect(a.get_by_test_id("toast").last).to_contain_text("好友申请已发送")
    await expect(b.get_by_test_id("nav-contacts-badge")).to_have_text("1")
    await b.get_by_test_id("nav-contacts").click()
    await b.get_by_test_id("sub-requests").click()
    await b.get_by_test_id("request").get_by_test_id("accept").click()
    for p in (a, b):
        await p.get_by_test_id("nav-chats").click()
        await expect(p.get_by_test_id("conv")).to_have_count(1)


async def send_text(page: Page, text: str) -> None:
    box = page.get_by_test_id("composer")
    await box.fill(text)
    await box.press("Enter")


async def changes(read: Callable[[], Awaitable[str]], old: str, timeout_s: float = 20.0) -> str:
    """Wait until ``read()`` returns something other than ``old``; return it (polled every 100 ms)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await read()
        if value != old:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"value did not change within {timeout_s} s")
        await asyncio.sleep(0.1)
