"""A server restart in the middle of a conversation: the client says so, then nothing is lost or doubled."""

from __future__ import annotations

import json
import re

import pytest
from playwright.async_api import Browser, Page, WebSocketRoute, expect

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
        # "Reconnect now" is a real button, not a faint link (issue 13).
        await expect(banner.get_by_test_id("reconnect-now")).to_have_class(
            re.compile(r"\bbtn\b.*\bprimary\b")
        )
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


async def test_unacknowledged_message_is_resent_once_after_reload(browser: Browser, web: WebServer) -> None:
    """The server stores the message but its "sent" ack never reaches the tab; the tab is reloaded. The outbox
    (kept per tab) survives; after the reload the sync brings the stored copy, recognised by its cmid (a resend
    would carry the same cmid and be answered as a duplicate), and everyone sees the message exactly once."""
    errors = PageErrors()
    alice = await new_page(browser, errors)
    bob = await new_page(browser, errors)
    drop_acks = {"on": False}
    sends: list[dict[str, str]] = []

    def to_server(server: WebSocketRoute, frame: str | bytes) -> None:
        if isinstance(frame, str) and '"type":"message.send"' in frame:
            sends.append(json.loads(frame))
        server.send(frame)

    def route(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        ws.on_message(lambda frame: to_server(server, frame))
        server.on_message(
            lambda frame: (
                None
                if drop_acks["on"] and isinstance(frame, str) and '"type":"message.sent"' in frame
                else ws.send(frame)
            )
        )

    await alice.route_web_socket(re.compile(r"/ws$"), route)
    await register(alice, web.url, "alice", "Alice")
    await register(bob, web.url, "bob", "Bob")
    await befriend(alice, bob, "bob")
    for p in (alice, bob):
        await p.get_by_test_id("conv").click()

    drop_acks["on"] = True
    await send_text(alice, "stored but never acknowledged")
    await expect(stream_msgs(bob).filter(has_text="stored but never acknowledged")).to_have_count(1)
    await expect(alice.locator("[data-pending=true]")).to_have_count(1)  # no ack: still pending
    outbox = await alice.evaluate(
        "Object.keys(sessionStorage).filter(k => k.startsWith('wsim.outbox.')).map(k => sessionStorage.getItem(k))"
    )
    assert any("stored but never acknowledged" in v for v in outbox)

    drop_acks["on"] = False
    await alice.reload()
    await expect(alice.get_by_test_id("conn-status")).to_have_attribute("data-state", "connected")
    await alice.get_by_test_id("conv").click()
    await expect(alice.locator("[data-pending=true]")).to_have_count(0)
    await expect(stream_msgs(alice).filter(has_text="stored but never acknowledged")).to_have_count(1)
    await send_text(alice, "and one more")
    await expect(stream_msgs(bob).filter(has_text="and one more")).to_have_count(1)
    await expect(stream_msgs(bob).filter(has_text="stored but never acknowledged")).to_have_count(1)
    cmids = {f["cmid"] for f in sends if f.get("text") == "stored but never acknowledged"}
    assert len(cmids) == 1, sends
    assert errors == [], errors


async def test_first_reconnect_is_immediate(browser: Browser, web: WebServer) -> None:
    """A dropped socket is reopened at once; only a failed attempt waits (a 5 s outage took 9-14 s before)."""
    errors = PageErrors()
    page = await new_page(browser, errors)
    await register(page, web.url, "alice", "Alice")
    await page.evaluate(
        """async () => {
          const vue = await import('/app/vendor/vue/vue.runtime.esm-browser.prod.js');
          const store = await import('/app/js/store.js');
          window.__waits = [];
          vue.watch(() => store.state.status.state, (s) => {
            if (s === 'waiting') window.__waits.push(store.state.status.retryAt - Date.now());
          }, { flush: 'sync' });
          store.connection().drop();
        }"""
    )
    await page.wait_for_function("() => window.__waits.length > 0")
    await expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "connected")
    waits = await page.evaluate("window.__waits")
    assert len(waits) == 1 and waits[0] <= 0, waits
    assert errors == [], errors
