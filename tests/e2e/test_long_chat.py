"""Long chats in the browser (issue 13): a 150-message conversation on a desktop and a phone viewport.

Only the message list scrolls (the page never does), a chat opens at its first unread message with a "新消息"
marker or else at the newest, the mouse wheel scrolls the list, older pages load when scrolling up, "jump to
latest" appears when scrolled up, and a reload reopens the chat. The history is seeded through the SDK (REST and
WebSocket), as two people would write it.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Page, expect

from core.sdk import WsimClient
from tests.e2e.conftest import PASSWORD, PageErrors, WebServer, new_page, send_text, shot, stream_msgs

DESKTOP = (1280, 800)
PHONE = (390, 844)
TOTAL = 150
UNREAD = 30  # the last messages, from Bob, that Alice has not read

# A realistic exchange, cycled: two colleagues planning a trip and a release; runs of one to three lines each.
SCRIPT = [
    ("bob", "早！周末的行程定了吗？"),
    ("alice", "差不多了，周六早上八点出发"),
    ("alice", "你那边能开车吗？🚗"),
    ("bob", "可以，我去接你"),
    ("bob", "顺便带上上次说的那本书 📚"),
    ("alice", "好呀，谢谢！"),
    ("bob", "对了，发布的事情：测试环境今天下午能准备好吗？"),
    ("alice", "我问一下运维，应该没问题"),
    ("alice", "回归测试还剩 12 条用例"),
    ("alice", "明天中午前能跑完"),
    ("bob", "👍 辛苦了"),
    ("bob", "发布说明我来更新，链接在这里 https://example.com/release-notes"),
    ("alice", "收到"),
    ("bob", "晚上一起吃饭吗？老地方 🍜"),
    ("alice", "七点可以，我可能晚到十分钟"),
    ("bob", "没事，我先点菜"),
    ("alice", "Great, see you then! 🎉"),
    ("bob", "刚才的会你听了吗？"),
    ("alice", "听了一半，后面被叫走了 😅"),
    ("bob", "结论是下周二上线，周一冻结代码"),
    ("alice", "那我今晚把剩下的两个 bug 修掉"),
    ("bob", "别熬太晚 ☕"),
    ("alice", "放心，十点前搞定"),
]
PACKING = ["身份证", "充电宝", "雨伞 ☂️", "防晒霜", "相机 📷", "两瓶水", "零食", "薄外套", "驾照", "耳机"]


def seeded_lines(n: int) -> list[tuple[str, str]]:
    lines = (SCRIPT * (n // len(SCRIPT) + 1))[: n - UNREAD - 1]
    # The last UNREAD are Bob's, so Alice (whose own message marks the chat read) has exactly that many unread:
    # a packing list, one item a message, as people write them.
    tail = [("bob", f"出发清单 {i + 1}/{UNREAD}：{PACKING[i % len(PACKING)]}") for i in range(UNREAD)]
    return [*lines, ("alice", "好的，清单发我一下"), *tail]


async def seed(url: str) -> tuple[WsimClient, WsimClient, str]:
    alice, bob = WsimClient(url), WsimClient(url)
    await alice.register("alice", PASSWORD, "Alice 王")
    await bob.register("bob", PASSWORD, "Bob 李")
    await alice.befriend(bob)
    await alice.connect()
    await bob.connect()
    conv = alice.direct_conv(alice.user_id, bob.user_id)
    clients = {"alice": alice, "bob": bob}
    for who, text in seeded_lines(TOTAL):
        await clients[who].send(conv, text)
    return alice, bob, conv


async def log_in(page: Page, url: str, username: str) -> None:
    await page.goto(url + "/")
    await page.locator("input[name=username]").fill(username)
    await page.locator("input[name=password]").fill(PASSWORD)
    await page.get_by_test_id("submit").click()
    await expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "connected")


async def page_does_not_scroll(page: Page) -> None:
    sizes = await page.evaluate(
        "() => ({sh: document.scrollingElement.scrollHeight, ih: innerHeight, y: scrollY})"
    )
    assert sizes["sh"] <= sizes["ih"] and sizes["y"] == 0, sizes


async def newest_in_view(page: Page) -> None:
    last = stream_msgs(page).last
    await expect(last).to_be_in_viewport()
    stream = await page.get_by_test_id("stream").bounding_box()
    box = await last.bounding_box()
    assert stream and box and box["y"] + box["height"] <= stream["y"] + stream["height"] + 1, (stream, box)


async def stream_top(page: Page) -> float:
    top: float = await page.get_by_test_id("stream").evaluate("e => e.scrollTop")
    return top


async def wheel_to_oldest(page: Page) -> int:
    """Scroll up with the mouse wheel over the messages until the first message is loaded; return wheel turns."""
    box = await page.get_by_test_id("stream").bounding_box()
    assert box
    await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    no_older = page.get_by_test_id("stream-top").filter(has_text="没有更早的消息了")
    for turn in range(1, 80):
        before = await stream_top(page)
        count = await stream_msgs(page).count()
        await page.mouse.wheel(0, -1200)
        # The wheel moved the list, or an older page was prepended (which keeps the reader's place).
        await page.wait_for_function(
            """([before, count]) => {
              const s = document.querySelector('[data-testid=stream]');
              return s.scrollTop < before || s.querySelectorAll('[data-testid=msg]').length > count;
            }""",
            arg=[before, count],
        )
        await page_does_not_scroll(page)
        if await no_older.count() and await stream_top(page) == 0:
            return turn
    raise AssertionError("never reached the oldest message")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
async def test_long_chat(browser: Browser, web: WebServer, viewport: tuple[int, int]) -> None:
    await web.stop()
    web.overrides = {"limits": {"rate_per_s": 1000, "rate_burst": 1000}}  # seeding 150 messages at once
    await web.start()
    alice_sdk, bob_sdk, conv = await seed(web.url)
    errors = PageErrors()
    page = await new_page(browser, errors, viewport=viewport)
    phone = viewport == PHONE
    name = "phone" if phone else "desktop"
    try:
        await log_in(page, web.url, "alice")
        row = page.get_by_test_id("conv")
        await expect(row.get_by_test_id("unread")).to_have_text(str(UNREAD))
        await expect(page).to_have_title(f"({UNREAD}) wsim")

        # Opens at the first unread message, under the "新消息" marker; header and composer stay on screen.
        await row.click()
        marker = page.get_by_test_id("unread-marker")
        await expect(marker).to_have_text("新消息")
        await expect(marker).to_be_in_viewport()
        first_unread = page.locator("[data-testid=unread-marker] + [data-testid=msg]")
        await expect(first_unread).to_contain_text(f"出发清单 1/{UNREAD}：")
        await expect(page.locator(".chat-head")).to_be_in_viewport()
        await expect(page.get_by_test_id("composer")).to_be_in_viewport()
        await page_does_not_scroll(page)
        await expect(page.get_by_test_id("conv").first.get_by_test_id("unread")).to_have_count(0)
        if not phone:
            await expect(page.get_by_test_id("conv-list")).to_be_in_viewport()
        await shot(page, f"08-long-chat-unread-{name}")

        # Thirty new messages do not fit under the marker: "jump to latest" goes to the newest.
        jump = page.get_by_test_id("jump-latest")
        await expect(jump).to_be_visible()
        await jump.click()
        await newest_in_view(page)
        await expect(jump).to_be_hidden()

        # Consecutive messages of one sender are one run: avatar and name once, the time at the end.
        run = stream_msgs(page).filter(has_text="出发清单")
        await expect(run.nth(1)).to_have_attribute("data-cont", "true")
        await expect(run.nth(1).locator(".avatar")).to_have_count(0)
        await expect(run.nth(1).get_by_test_id("time")).to_have_count(0)
        await expect(run.last.get_by_test_id("time")).to_have_count(1)

        # The wheel scrolls the list (the page stays put) and older pages load until the very first message.
        turns = await wheel_to_oldest(page)
        assert turns > 2, turns
        await expect(stream_msgs(page)).to_have_count(TOTAL + 1)  # and the friend notice
        oldest = stream_msgs(page).nth(1)
        await expect(oldest).to_contain_text("早！周末的行程定了吗？")
        await expect(oldest).to_be_in_viewport()
        await expect(page.locator(".chat-head")).to_be_in_viewport()
        await expect(jump).to_be_visible()

        # A new message while scrolled up does not move the list; jumping shows it.
        await bob_sdk.send(conv, "在吗？有个急事 ⏰")
        await expect(stream_msgs(page).filter(has_text="有个急事")).to_have_count(1)
        await expect(oldest).to_be_in_viewport()
        await jump.click()
        await expect(stream_msgs(page).filter(has_text="有个急事")).to_be_in_viewport()

        # Sending from the composer keeps the newest message in view.
        await send_text(page, "在的，你说 🙂")
        await expect(stream_msgs(page).last.get_by_test_id("receipt")).to_have_attribute(
            "data-status", "delivered"
        )
        await newest_in_view(page)
        await page_does_not_scroll(page)
        await shot(page, f"09-long-chat-{name}")

        # Contacts and back: the chat opens at its newest message, composer on screen (it opened at the oldest).
        if phone:
            await page.get_by_test_id("back").click()
        await page.get_by_test_id("nav-contacts").click()
        await expect(page.get_by_test_id("friend")).to_have_count(1)
        await page.get_by_test_id("friend-message").click()
        await newest_in_view(page)
        await expect(page.get_by_test_id("composer")).to_be_in_viewport()
        await expect(page.get_by_test_id("unread-marker")).to_have_count(0)
        await page_does_not_scroll(page)

        # A reload reopens the chat, at the newest message.
        await page.reload()
        await expect(page.get_by_test_id("chat-title")).to_have_text("Bob 李")
        await newest_in_view(page)
        await page_does_not_scroll(page)
    finally:
        await alice_sdk.close()
        await bob_sdk.close()
    assert errors == [], errors
