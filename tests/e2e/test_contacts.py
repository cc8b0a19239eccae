"""Contacts and group management in the browser, and history paged in by scrolling up."""

from __future__ import annotations

import time

import pytest
from playwright.async_api import Browser, Page, expect

from core.sdk import SendError, WsimClient
from tests.e2e.conftest import PASSWORD, PageErrors, WebServer, new_page, register, stream_msgs


async def my_id(page: Page) -> str:
    uid: str = await page.evaluate("JSON.parse(localStorage.getItem('wsim.auth')).user.id")
    return uid


async def sdk_user(web: WebServer, name: str, made: list[WsimClient]) -> WsimClient:
    c = WsimClient(web.url)
    made.append(c)
    await c.register(name, PASSWORD, name.title())
    await c.connect()
    return c


async def test_requests_remark_block_and_group_management(browser: Browser, web: WebServer) -> None:
    errors = PageErrors()
    page = await new_page(browser, errors)
    await register(page, web.url, "alice", "Alice")
    me = await my_id(page)
    made: list[WsimClient] = []
    try:
        bob, carol, dave = [await sdk_user(web, n, made) for n in ("bob", "carol", "dave")]
        for c in (bob, carol, dave):
            await c.request("POST", "/api/friends/requests", json={"user_id": me})
        await page.get_by_test_id("nav-contacts").click()
        await page.get_by_test_id("sub-requests").click()
        requests = page.get_by_test_id("request")
        await expect(requests).to_have_count(3)
        await requests.filter(has_text="@dave").get_by_test_id("decline").click()
        declined = await dave.next_event("notify", where=lambda e: e["event"] == "friend.declined")
        assert declined["data"]["by"] == me
        for name in ("@bob", "@carol"):
            await requests.filter(has_text=name).get_by_test_id("accept").click()
        await expect(requests).to_have_count(0)

        # A remark replaces the name everywhere, for alice only.
        await page.get_by_test_id("sub-friends").click()
        bob_row = page.get_by_test_id("friend").filter(has_text="@bob")
        await bob_row.get_by_test_id("friend-menu").click()
        await bob_row.get_by_test_id("friend-remark").click()
        await page.get_by_test_id("remark-input").fill("老李")
        await page.get_by_test_id("remark-save").click()
        await expect(bob_row.locator(".person-name")).to_have_text("老李")
        await page.get_by_test_id("nav-chats").click()
        bob_conv = bob.direct_conv(bob.user_id, me)
        await expect(page.locator(f"[data-conv='{bob_conv}'] [data-testid=conv-name]")).to_have_text("老李")

        # Block: the chat becomes read-only and bob's messages are refused; unblock restores both.
        await page.get_by_test_id("nav-contacts").click()
        await bob_row.get_by_test_id("friend-menu").click()
        await bob_row.get_by_test_id("friend-block").click()
        await page.get_by_test_id("confirm-ok").click()
        await page.get_by_test_id("sub-blocked").click()
        await expect(page.get_by_test_id("blocked-user")).to_have_count(1)
        with pytest.raises(SendError) as info:
            await bob.send(bob_conv, "can you hear me?")
        assert info.value.code == "blocked"
        await page.get_by_test_id("nav-chats").click()
        await page.locator(f"[data-conv='{bob_conv}']").click()
        await expect(page.get_by_test_id("readonly")).to_have_text("你已屏蔽对方")
        await page.get_by_test_id("nav-contacts").click()
        await page.get_by_test_id("unblock").click()
        await expect(page.get_by_test_id("blocked-user")).to_have_count(0)
        await expect(page.get_by_test_id("composer")).to_be_visible()
        await bob.send(bob_conv, "now I can")
        await expect(stream_msgs(page).filter(has_text="now I can")).to_have_count(1)

        # Alice's group: remove a member from the panel.
        await page.get_by_test_id("sub-friends").click()
        await page.get_by_test_id("new-group").click()
        await page.get_by_test_id("new-group-name").fill("读书会")
        for pick in await page.get_by_test_id("pick").all():
            await pick.check()
        await page.get_by_test_id("create-group").click()
        await page.get_by_test_id("group-info").click()
        panel = page.get_by_test_id("group-panel")
        await expect(panel.get_by_test_id("member")).to_have_count(3)
        carol_row = panel.get_by_test_id("member").filter(has_text="Carol")
        await carol_row.get_by_test_id("member-menu").click()
        await carol_row.get_by_test_id("remove-member").click()
        await expect(panel.get_by_test_id("member")).to_have_count(2)
        removed = await carol.next_event("notify", where=lambda e: e["event"] == "group.removed")
        await expect(page.locator("[data-kind=system]").last).to_have_text("你将Carol移出了群聊")

        # Bob's group: alice leaves it; the conversation turns read-only for her.
        group = await bob.create_group("Bob 的群", [me])
        row = page.locator(f"[data-conv='{group['conv']}']")
        await row.click()
        await page.get_by_test_id("group-info").click()
        await page.get_by_test_id("group-panel").get_by_test_id("leave").click()
        await page.get_by_test_id("confirm-ok").click()
        await expect(page.get_by_test_id("readonly")).to_have_text("你已不在此群聊中")
        members = await bob.request("GET", f"/api/groups/{group['id']}/members")
        assert [m["user"]["id"] for m in members["members"]] == [bob.user_id]
        assert removed["data"]["conv"] != group["conv"]
    finally:
        for c in made:
            await c.close()
    assert errors == [], errors


async def test_history_pages_in_when_scrolling_up(browser: Browser, web: WebServer) -> None:
    errors = PageErrors()
    page = await new_page(browser, errors, viewport=(1000, 700))
    await register(page, web.url, "alice", "Alice")
    me = await my_id(page)
    made: list[WsimClient] = []
    try:
        bob = await sdk_user(web, "bob", made)
        await bob.request("POST", "/api/friends/requests", json={"user_id": me})
        await page.get_by_test_id("nav-contacts").click()
        await page.get_by_test_id("sub-requests").click()
        await page.get_by_test_id("request").get_by_test_id("accept").click()
        await bob.next_event("notify", where=lambda e: e["event"] == "friend.accepted")
        conv = bob.direct_conv(bob.user_id, me)
        total = 130
        for i in range(1, total + 1):
            await bob.send(conv, f"message {i:03d}")
        # A reload empties the tab's memory: the open conversation is filled from history pages.
        await page.reload()
        await expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "connected")
        # Unread: bob's messages (the friendship notice is not: this user accepted it).
        await expect(page.get_by_test_id("conv")).to_have_attribute("data-unread", str(total))
        await expect(page.get_by_test_id("conv").get_by_test_id("unread")).to_have_text("99+")
        pages: list[str] = []
        page.on(
            "request",
            lambda r: pages.append(r.url) if f"/api/conversations/{conv}/messages" in r.url else None,
        )
        await page.get_by_test_id("conv").click()
        texts = stream_msgs(page).locator(".text")
        await expect(texts.last).to_have_text(f"message {total:03d}")
        stream = page.get_by_test_id("stream")
        # Scroll to the top until the first message is in: bounded by time, not by a count of scrolls (20
        # scrolls 150 ms apart were 3 s, which a loaded machine's page fetches and layout could exceed).
        deadline = time.monotonic() + 30
        while not await stream.get_by_text("message 001", exact=True).count():
            assert time.monotonic() < deadline, f"the first message never paged in; history requests: {pages}"
            await stream.evaluate("el => { el.scrollTop = 0; el.dispatchEvent(new Event('scroll')); }")
            await page.wait_for_timeout(150)
        await expect(texts.first).to_have_text("message 001")
        shown = [t.strip() for t in await texts.all_inner_texts()]
        assert shown == [f"message {i:03d}" for i in range(1, total + 1)]
        await expect(page.get_by_test_id("stream")).to_contain_text("没有更早的消息了")
        # Not everything at once: the history came in several pages (how many the opening pass takes and how
        # many scrolling up fetches depends on timing, but one request cannot carry 130 messages).
        assert len(pages) >= 2, pages
        await expect(page.get_by_test_id("conv").get_by_test_id("unread")).to_have_count(0)
    finally:
        for c in made:
            await c.close()
    assert errors == [], errors
