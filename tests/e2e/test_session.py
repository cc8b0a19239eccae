"""Login sessions in the browser: silent token refresh, two tabs as two devices, logout, language, phone layout."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Page, WebSocket, expect

from core.sdk import WsimClient
from tests.e2e.conftest import (
    PageErrors,
    WebServer,
    befriend_sdk,
    changes,
    new_page,
    register,
    send_text,
    shot,
    stream_msgs,
    user_id,
)


async def access_token(page: Page) -> str:
    token: str = await page.evaluate("JSON.parse(localStorage.getItem('wsim.auth')).access_token")
    return token


@pytest.mark.slow
async def test_two_tabs_silent_refresh_and_logout(browser: Browser, web: WebServer) -> None:
    # Access tokens live 62 s and are renewed 60 s before expiry: several refreshes happen during this test.
    await web.stop()
    web.overrides = {"auth": {"access_ttl_s": 62}}
    await web.start()
    errors = PageErrors()
    tab1 = await new_page(browser, errors)
    sockets: dict[str, list[WebSocket]] = {"tab1": [], "tab2": []}
    tab1.on("websocket", lambda ws: sockets["tab1"].append(ws))  # noqa: PLW0108 - Playwright needs a Python function
    await register(tab1, web.url, "alice", "Alice")
    tab2 = await new_page(browser, errors, context=tab1.context)  # same browser: shared login, own device
    tab2.on("websocket", lambda ws: sockets["tab2"].append(ws))  # noqa: PLW0108 - Playwright needs a Python function
    await tab2.goto(web.url + "/")
    await expect(tab2.get_by_test_id("conn-status")).to_have_attribute("data-state", "connected")
    devices = [await p.evaluate("sessionStorage.getItem('wsim.device')") for p in (tab1, tab2)]
    assert devices[0] != devices[1] and all(d.startswith("web-") for d in devices)

    bob = WsimClient(web.url)
    try:
        await befriend_sdk(tab1, bob, "bob", "Bob")

        # Tokens are refreshed in the background (one refresh shared by both tabs through a lock) ...
        first = await access_token(tab1)
        second = await changes(lambda: access_token(tab1), first)
        await changes(lambda: access_token(tab2), second)
        # ... without the sockets noticing: one socket per tab, still connected, messages flow both ways.
        for tab in (tab1, tab2):
            await tab.get_by_test_id("nav-chats").click()
            await tab.get_by_test_id("conv").click()
            await expect(tab.get_by_test_id("conn-status")).to_have_attribute("data-state", "connected")
        assert (len(sockets["tab1"]), len(sockets["tab2"])) == (1, 1)
        await send_text(tab1, "from tab one")
        await expect(stream_msgs(tab2).filter(has_text="from tab one")).to_have_count(1)
        conv = bob.direct_conv(bob.user_id, await user_id(tab1))
        await bob.send(conv, "hello both tabs")
        for tab in (tab1, tab2):
            await expect(stream_msgs(tab).filter(has_text="hello both tabs")).to_have_count(1)
        # Bob's client refreshed nothing and still works with the same session; alice's REST calls succeed.
        await tab2.get_by_test_id("nav-contacts").click()
        await expect(tab2.get_by_test_id("friend")).to_have_count(1)

        # Logging out in one tab ends the session in both.
        await tab1.get_by_test_id("logout").click()
        await tab1.get_by_test_id("confirm").get_by_test_id("confirm-ok").click()
        for tab in (tab1, tab2):
            await expect(tab.get_by_test_id("login")).to_be_visible()
        assert await tab2.evaluate("localStorage.getItem('wsim.auth')") is None
    finally:
        await bob.close()
    assert errors == [], errors


async def test_language_switch_and_phone_layout(browser: Browser, web: WebServer) -> None:
    errors = PageErrors()
    page = await new_page(browser, errors, viewport=(390, 844))
    await page.goto(web.url + "/")
    await page.get_by_test_id("lang").click()
    await expect(page.get_by_test_id("tab-login")).to_have_text("Log in")
    await page.get_by_test_id("lang").click()
    await expect(page.get_by_test_id("tab-login")).to_have_text("登录")
    await register(page, web.url, "mei", "小美")

    bob = WsimClient(web.url)
    try:
        await befriend_sdk(page, bob, "bob", "Bob")
        await page.get_by_test_id("nav-chats").click()
        conv = bob.direct_conv(bob.user_id, await user_id(page))
        for text in ("在吗？", "晚上一起吃饭吧", "七点，老地方"):
            await bob.send(conv, text)
        row = page.get_by_test_id("conv")
        await expect(row.get_by_test_id("unread")).to_have_text("3")  # the notice is ours: we accepted
        # One pane at a time: the list, then the chat (with a way back).
        await expect(page.get_by_test_id("chat")).to_have_count(0)
        await shot(page, "06-phone-list")
        await row.click()
        await expect(page.get_by_test_id("conv-list")).to_be_hidden()
        await expect(stream_msgs(page).filter(has_text="七点，老地方")).to_be_visible()
        await send_text(page, "好的，不见不散")
        await expect(
            stream_msgs(page).filter(has_text="不见不散").get_by_test_id("receipt")
        ).to_have_attribute("data-status", "delivered")
        await shot(page, "07-phone-chat")
        await page.get_by_test_id("back").click()
        await expect(page.get_by_test_id("conv-list")).to_be_visible()

        # English everywhere after the switch, including the connection state (on a phone the language button is in
        # the list header's menu, not in the tab bar).
        await expect(page.get_by_test_id("lang")).to_be_hidden()
        await page.get_by_test_id("me-menu").click()
        await page.get_by_test_id("menu-lang").click()
        await expect(page.get_by_test_id("conn-status")).to_have_text("Connected")
        await expect(page.get_by_test_id("nav-chats")).to_have_attribute("aria-label", "Chats")
    finally:
        await bob.close()
    assert errors == [], errors
