"""A server restart in the middle of a conversation: the client says so, then nothing is lost or doubled."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Page, expect

from tests.e2e.conftest import (
    PageErrors,
    WebServer,
    befriend,
    new_page,
    register,
    send_text,
    shot,
    stream_msgs,
)

# While the server is down, Chromium logs each refused socket as a console error: expected here.
EXPECTED_WHILE_DOWN = ("WebSocket connection to", "ERR_CONNECTION_REFUSED", "Failed to load resource")


async def texts(page: Page) -> list[str]:
    """Message texts in the order the stream shows them (confirmed messages only)."""
    rows = stream_msgs(page).and_(page.locator("[data-seq]"))
    return [t.strip() for t in await rows.locator(".text").all_inner_texts()]


@pytest.mark.slow
async def test_restart_mid_conversation(browser: Browser, web: WebServer) -> None:
    errors = PageErrors()
    alice = await new_page(browser, errors)
    bob = await new_page(browser, errors)
    await register(alice, web.url, "alice", "Alice")
    await register(bob, web.url, "bob", "Bob")
    await befriend(alice, bob, "bob")
    for p in (alice, bob):
        await p.get_by_test_id("conv").click()
    await send_text(alice, "before 1")
    await expect(stream_msgs(bob).filter(has_text="before 1")).to_have_count(1)

    await web.stop()
    for p in (alice, bob):
        banner = p.get_by_test_id("conn-banner")
        await expect(banner).to_have_attribute("data-state", "waiting")
        await expect(banner).to_contain_text("秒后重连")
    await shot(alice, "05-reconnecting")

    gap_alice = [f"gap alice {i}" for i in range(1, 4)]
    gap_bob = [f"gap bob {i}" for i in range(1, 3)]
    for text in gap_alice:
        await send_text(alice, text)
    for text in gap_bob:
        await send_text(bob, text)
    pending = alice.locator("[data-pending=true]")
    await expect(pending).to_have_count(3)
    await expect(pending.get_by_test_id("receipt").first).to_have_attribute("data-status", "pending")

    await web.start()  # same port, same data directory
    for p in (alice, bob):
        await expect(p.get_by_test_id("conn-status")).to_have_attribute(
            "data-state", "connected", timeout=40_000
        )
    expected = ["before 1", *gap_alice, *gap_bob]
    for p in (alice, bob):
        await expect(p.locator("[data-pending=true]")).to_have_count(0)
        for text in expected:
            await expect(stream_msgs(p).filter(has_text=text)).to_have_count(1)
    # Each side's gap messages are in the order they were written, once each, on both sides.
    for p in (alice, bob):
        shown = await texts(p)
        assert [t for t in shown if t.startswith("gap alice")] == gap_alice, shown
        assert [t for t in shown if t.startswith("gap bob")] == gap_bob, shown
        assert len(shown) == len(set(shown)) == len(expected), shown

    # After a reload the tab resumes from its persisted cursors: the same messages, still once each.
    await bob.reload()
    await expect(bob.get_by_test_id("conn-status")).to_have_attribute("data-state", "connected")
    await bob.get_by_test_id("conv").click()
    for text in expected:
        await expect(stream_msgs(bob).filter(has_text=text)).to_have_count(1)
    await send_text(bob, "after reload")
    await expect(stream_msgs(alice).filter(has_text="after reload")).to_have_count(1)

    unexpected = [e for e in errors if not any(x in e for x in EXPECTED_WHILE_DOWN)]
    assert unexpected == [], unexpected
