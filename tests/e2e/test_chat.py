"""Two people in two browsers: befriend, chat both ways, ticks, images, files, recall, a group of three."""

from __future__ import annotations

import io
import re

from PIL import Image
from playwright.async_api import Browser, FilePayload, expect

from core.sdk import WsimClient
from tests.e2e.conftest import (
    PageErrors,
    WebServer,
    befriend,
    befriend_sdk,
    new_page,
    register,
    send_text,
    shot,
    stream_msgs,
)

# Thumbnails come through short-lived signed links from this origin, never from anywhere else.
THUMB_SRC = re.compile(r"^/api/files/\d+/thumbnail\?exp=\d+&sig=")


def png(w: int = 320, h: int = 200) -> bytes:
    img = Image.new("RGB", (w, h), (70, 120, 230))
    for x in range(w):
        for y in range(0, h, 8):
            img.putpixel((x, y), (250, 250, 250))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


async def test_two_people_chat(browser: Browser, web: WebServer) -> None:
    errors = PageErrors()
    alice = await new_page(browser, errors)
    bob = await new_page(browser, errors)
    await alice.goto(web.url + "/")
    await expect(alice.get_by_test_id("login")).to_be_visible()
    await shot(alice, "01-login")
    await register(alice, web.url, "alice", "Alice 王")
    await register(bob, web.url, "bob", "Bob 李")
    await befriend(alice, bob, "bob")

    # Alice opens the chat and writes; Bob is not looking at it yet: delivered, not read.
    await alice.get_by_test_id("conv").click()
    await expect(alice.get_by_test_id("chat-title")).to_have_text("Bob 李")
    await send_text(alice, "你好 Bob！")
    mine = stream_msgs(alice).filter(has_text="你好 Bob！")
    await expect(mine.get_by_test_id("receipt")).to_have_attribute("data-status", "delivered")
    # Unread as the server counts it: the message (Bob accepted the friendship, so its notice is his own).
    await expect(bob.get_by_test_id("conv").get_by_test_id("unread")).to_have_text("1")
    await expect(bob.get_by_test_id("conv-preview")).to_have_text("你好 Bob！")
    assert (await bob.title()).startswith("(1)")

    # Shift+Enter is a new line, Enter sends.
    await bob.get_by_test_id("conv").click()
    await expect(mine.get_by_test_id("receipt")).to_have_attribute("data-status", "read")
    box = bob.get_by_test_id("composer")
    await box.fill("你好 Alice")
    await box.press("Shift+Enter")
    await box.type("第二行 https://example.com/a?b=1")
    await box.press("Enter")
    reply = stream_msgs(alice).filter(has_text="第二行")
    await expect(reply).to_have_count(1)
    assert await reply.locator(".text").inner_text() == "你好 Alice\n第二行 https://example.com/a?b=1"
    link = reply.locator("a")
    await expect(link).to_have_attribute("href", "https://example.com/a?b=1")
    await expect(link).to_have_attribute("rel", "noopener noreferrer")
    await expect(bob.get_by_test_id("conv").get_by_test_id("unread")).to_have_count(0)
    assert await bob.title() == "wsim"

    # Typing indicator.
    await bob.get_by_test_id("composer").type("正在输入")
    await expect(alice.get_by_test_id("typing")).to_contain_text("Bob 李")
    await bob.get_by_test_id("composer").fill("")

    # An image: upload progress, thumbnail on both sides, full image on click.
    await alice.get_by_test_id("image-input").set_input_files(
        files=[FilePayload(name="海边.png", mimeType="image/png", buffer=png())]
    )
    img = stream_msgs(bob).filter(has=bob.get_by_test_id("image"))
    await expect(img.locator("img")).to_have_attribute("src", THUMB_SRC)
    await expect(
        stream_msgs(alice).filter(has=alice.get_by_test_id("image")).get_by_test_id("receipt")
    ).to_have_attribute("data-status", "read")
    await img.get_by_test_id("image").click()
    await expect(bob.get_by_test_id("lightbox").locator("img")).to_be_visible()
    await bob.keyboard.press("Escape")
    await expect(bob.get_by_test_id("lightbox")).to_have_count(0)

    # A file: name, size and a download link.
    await alice.get_by_test_id("file-input").set_input_files(
        files=[FilePayload(name="季度报告.txt", mimeType="text/plain", buffer=b"report\n" * 300)]
    )
    card = bob.get_by_test_id("file")
    await expect(card.get_by_test_id("file-name")).to_have_text("季度报告.txt")
    await expect(card).to_contain_text("2.1 KB")
    async with bob.expect_download() as dl_info:
        await card.click()
    download = await dl_info.value
    assert download.suggested_filename == "季度报告.txt"

    # Recall: Alice takes back a message; both sides show the notice instead.
    await send_text(alice, "说错了")
    wrong = stream_msgs(alice).filter(has_text="说错了")
    await expect(wrong.get_by_test_id("receipt")).to_have_attribute("data-status", "read")
    await expect(stream_msgs(bob).filter(has_text="说错了")).to_have_count(1)
    await wrong.hover()
    await wrong.get_by_test_id("recall").click()
    await expect(alice.locator("[data-kind=recalled]")).to_have_text("你撤回了一条消息")
    await expect(bob.locator("[data-kind=recalled]")).to_have_text("Alice 王撤回了一条消息")
    await expect(stream_msgs(bob).filter(has_text="说错了")).to_have_count(0)
    await shot(alice, "03-chat")

    # Presence: Bob sees Alice online in contacts.
    await bob.get_by_test_id("nav-contacts").click()
    await bob.get_by_test_id("sub-friends").click()
    await expect(bob.get_by_test_id("friend").get_by_test_id("presence")).to_have_attribute(
        "data-online", "true"
    )

    # A group of three: Carol (an SDK client) is a friend of Alice; Alice creates the group in the browser.
    carol = WsimClient(web.url)
    try:
        await befriend_sdk(alice, carol, "carol", "Carol 张")
        await alice.get_by_test_id("sub-friends").click()
        await expect(alice.get_by_test_id("friend")).to_have_count(2)
        await alice.get_by_test_id("new-group").click()
        await alice.get_by_test_id("new-group-name").fill("周末爬山")
        for pick in await alice.get_by_test_id("pick").all():
            await pick.check()
        await alice.get_by_test_id("create-group").click()
        await expect(alice.get_by_test_id("chat-title")).to_have_text("周末爬山")
        await expect(alice.locator("[data-kind=system]").first).to_contain_text("创建了群聊「周末爬山」")
        await send_text(alice, "周六早上八点见")
        await bob.get_by_test_id("nav-chats").click()
        group_row = bob.get_by_test_id("conv").filter(has_text="周末爬山")
        await expect(group_row.get_by_test_id("unread")).to_have_count(1)
        await group_row.click()
        await expect(stream_msgs(bob).filter(has_text="周六早上八点见")).to_have_count(1)
        await expect(stream_msgs(bob).filter(has_text="周六早上八点见").locator(".sender")).to_have_text(
            "Alice 王"
        )
        # Read count: Bob has read it; Carol reads it from the SDK.
        hello = stream_msgs(alice).filter(has_text="周六早上八点见")
        await expect(hello.get_by_test_id("read-count")).to_have_text("1 人已读")
        msg = await next_text(carol, "周六早上八点见")
        await carol.read(msg["conv"], msg["seq"])
        await expect(hello.get_by_test_id("read-count")).to_have_text("全部已读")
        await carol.send(msg["conv"], "好的，我带水")
        await expect(stream_msgs(bob).filter(has_text="好的，我带水").locator(".sender")).to_have_text(
            "Carol 张"
        )
        await send_text(bob, "我带吃的")
        await expect(stream_msgs(alice).filter(has_text="我带吃的")).to_have_count(1)

        # Group management: the member list with roles, rename, make an admin.
        await alice.get_by_test_id("group-info").click()
        panel = alice.get_by_test_id("group-panel")
        await expect(panel.get_by_test_id("member")).to_have_count(3)
        await expect(panel.locator("[data-role=owner]")).to_contain_text("Alice 王")
        await panel.get_by_test_id("rename").click()
        await panel.get_by_test_id("group-name-input").fill("周末去爬山")
        await panel.get_by_test_id("group-name-save").click()
        await expect(bob.get_by_test_id("chat-title")).to_have_text("周末去爬山")
        bob_row = panel.get_by_test_id("member").filter(has_text="Bob 李")
        await bob_row.get_by_test_id("member-menu").click()
        await bob_row.get_by_test_id("make-admin").click()
        await expect(panel.locator("[data-role=admin]")).to_contain_text("Bob 李")
        await shot(alice, "04-group")
    finally:
        await carol.close()

    await alice.get_by_test_id("group-info").click()  # close the panel
    await expect(alice.get_by_test_id("group-panel")).to_have_count(0)
    await shot(alice, "02-conversations")
    assert errors == [], errors


async def next_text(client: WsimClient, text: str) -> dict:  # type: ignore[type-arg]
    while True:
        msg = await client.next_message(timeout=15)
        if msg["body"].get("text") == text:
            return msg
