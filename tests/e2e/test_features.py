"""Issue 13's everyday features in Chromium: desktop notifications (asked for from a click, silent while the tab
has focus, muted per conversation), the emoji picker, pasting an image, and drag-and-drop upload with its progress
bar. The Notification API is replaced by a recorder (a headless browser has no notification centre to look at);
everything else is the real page against a real node."""

from __future__ import annotations

import asyncio
import base64
import re
from typing import Any

from playwright.async_api import Browser, Page, Route, expect

from core.sdk import WsimClient
from tests.e2e.conftest import PASSWORD, PageErrors, WebServer, new_page, send_text, stream_msgs
from tests.e2e.test_chat import png
from tests.e2e.test_long_chat import log_in

FAKE_NOTIFICATIONS = """
window.__notes = [];
window.__asked = 0;
window.__focused = true;
class RecordingNotification {
  static permission = 'default';
  static async requestPermission() {
    window.__asked += 1;
    RecordingNotification.permission = 'granted';
    return 'granted';
  }
  constructor(title, options = {}) {
    this.onclick = null;
    window.__notes.push({ title, body: options.body, tag: options.tag });
    window.__lastNote = this;
  }
  close() {}
}
window.Notification = RecordingNotification;
document.hasFocus = () => window.__focused;
"""

DROP = """([b64, name, type, target]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const dt = new DataTransfer();
  dt.items.add(new File([bytes], name, { type }));
  const el = document.querySelector(target);
  const fire = (kind) => el.dispatchEvent(new DragEvent(kind, { dataTransfer: dt, bubbles: true, cancelable: true }));
  window.__drop = () => fire('drop');
  fire('dragenter');
  fire('dragover');
}"""

PASTE = """([b64, name]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const dt = new DataTransfer();
  dt.items.add(new File([bytes], name, { type: 'image/png' }));
  document.querySelector('[data-testid=composer]').dispatchEvent(
    new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
}"""


async def notes(page: Page) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = await page.evaluate("window.__notes")
    return out


def conv_row(page: Page, conv: str) -> Any:
    return page.locator(f"[data-testid=conv][data-conv='{conv}']")


async def test_notifications_emoji_paste_and_drop(browser: Browser, web: WebServer) -> None:
    errors = PageErrors()
    alice_sdk, bob, carol = WsimClient(web.url), WsimClient(web.url), WsimClient(web.url)
    try:
        await alice_sdk.register("alice", PASSWORD, "Alice 王")
        await bob.register("bob", PASSWORD, "Bob 李")
        await carol.register("carol", PASSWORD, "Carol 张")
        await bob.befriend(alice_sdk)
        await carol.befriend(alice_sdk)
        await bob.connect()
        await carol.connect()
        with_bob = bob.direct_conv(bob.user_id, alice_sdk.user_id)
        with_carol = carol.direct_conv(carol.user_id, alice_sdk.user_id)

        page = await new_page(browser, errors)
        await page.add_init_script(FAKE_NOTIFICATIONS)
        await log_in(page, web.url, "alice")

        # Notifications are offered in the list, asked for only when the offer is clicked.
        offer = page.get_by_test_id("notify-offer")
        await expect(offer).to_be_visible()
        assert await page.evaluate("window.__asked") == 0
        await page.get_by_test_id("notify-enable").click()
        await expect(offer).to_have_count(0)
        assert await page.evaluate("window.__asked") == 1

        # While the tab has focus the chat is the notification: none is shown.
        await bob.send(with_bob, "你在看吗？")
        await expect(conv_row(page, with_bob).get_by_test_id("conv-preview")).to_have_text("你在看吗？")
        assert await notes(page) == []

        # In the background, a message notifies: sender, text, one per conversation (tag).
        await page.evaluate("window.__focused = false")
        await bob.send(with_bob, "晚上七点，老地方 🍜")
        await page.wait_for_function("() => window.__notes.length === 1")
        assert await notes(page) == [{"title": "Bob 李", "body": "晚上七点，老地方 🍜", "tag": with_bob}]

        # Muting Bob's chat silences it, not Carol's.
        await page.evaluate("window.__focused = true")
        await conv_row(page, with_bob).click()
        await page.get_by_test_id("mute").click()
        await expect(page.get_by_test_id("mute")).to_have_attribute("data-muted", "true")
        await expect(conv_row(page, with_bob).get_by_test_id("muted")).to_be_visible()
        await page.evaluate("window.__focused = false")
        await bob.send(with_bob, "这条不打扰你")
        await expect(stream_msgs(page).filter(has_text="这条不打扰你")).to_have_count(1)
        await carol.send(with_carol, "文件我发你邮箱了")
        await page.wait_for_function("() => window.__notes.length === 2")
        shown = await notes(page)
        assert shown[1] == {"title": "Carol 张", "body": "文件我发你邮箱了", "tag": with_carol}, shown
        assert not any("不打扰" in n["body"] for n in shown), shown
        # Clicking a notification opens its chat.
        await page.evaluate("window.__focused = true; window.__lastNote.onclick()")
        await expect(page.get_by_test_id("chat-title")).to_have_text("Carol 张")
        # The mute survives a reload (per account, in this browser).
        await page.reload()
        await expect(page.get_by_test_id("chat-title")).to_have_text("Carol 张")
        await expect(conv_row(page, with_bob).get_by_test_id("muted")).to_be_visible()

        # The emoji picker inserts at the caret and stays open for more; Escape closes it.
        box = page.get_by_test_id("composer")
        await box.fill("收到，谢谢")
        await box.press("Home")
        await page.get_by_test_id("emoji-btn").click()
        picker = page.get_by_test_id("emoji-picker")
        await expect(picker).to_be_visible()
        await picker.get_by_text("👍", exact=True).click()
        await picker.get_by_text("🎉", exact=True).click()
        await expect(box).to_have_value("👍🎉收到，谢谢")
        await box.press("Escape")
        await expect(picker).to_have_count(0)
        await box.press("Enter")
        await expect(stream_msgs(page).filter(has_text="👍🎉收到，谢谢")).to_have_count(1)

        # A pasted image is uploaded and sent as an image.
        image = base64.b64encode(png(160, 100)).decode()
        await page.evaluate(PASTE, [image, "screenshot.png"])
        await expect(page.locator("[data-testid=stream] [data-testid=msg][data-kind=image]")).to_have_count(1)

        # A file dragged over the chat shows the drop zone; dropped, it uploads with a progress bar, then is sent.
        release = asyncio.Event()

        async def hold(route: Route) -> None:
            await release.wait()
            await route.continue_()

        await page.route(re.compile(r"/api/files$"), hold)
        report = base64.b64encode("会议纪要\n1. 周二上线\n".encode()).decode()
        await page.evaluate(DROP, [report, "纪要.txt", "text/plain", "[data-testid=chat]"])
        await expect(page.get_by_test_id("drop-zone")).to_be_visible()
        await page.evaluate("window.__drop()")
        await expect(page.get_by_test_id("drop-zone")).to_have_count(0)
        upload = page.get_by_test_id("upload")
        await expect(upload.get_by_role("progressbar")).to_be_visible()
        await expect(upload).to_contain_text("纪要.txt")
        release.set()
        await expect(upload).to_have_count(0)
        await expect(stream_msgs(page).filter(has_text="纪要.txt")).to_have_attribute("data-kind", "file")
        await send_text(page, "纪要在上面 👆")
        await expect(stream_msgs(page).last).to_contain_text("纪要在上面")
    finally:
        for c in (alice_sdk, bob, carol):
            await c.close()
    assert errors == [], errors
