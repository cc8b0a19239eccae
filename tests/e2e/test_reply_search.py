"""Reply / quote and message search in two browsers: Alice answers Bob's question with a quote, Bob recalls the
question and both see "original recalled"; Alice searches a Chinese word said long ago in a 150-message chat and
jumps to it in context."""

from __future__ import annotations

import re

from playwright.async_api import Browser, expect

from core.sdk import WsimClient
from tests.e2e.conftest import (
    PASSWORD,
    PageErrors,
    WebServer,
    befriend,
    new_page,
    register,
    send_text,
    shot,
    stream_msgs,
)


async def test_reply_recall_and_search_jump(browser: Browser, web: WebServer) -> None:
    errors = PageErrors()
    alice = await new_page(browser, errors)
    bob = await new_page(browser, errors)
    await register(alice, web.url, "alice", "Alice 王")
    await register(bob, web.url, "bob", "Bob 李")
    await befriend(alice, bob, "bob")

    # A long chat: Bob (his SDK device) said where to go 150 messages ago.
    bob_sdk = WsimClient(web.url)
    try:
        await bob_sdk.login("bob", PASSWORD)
        await bob_sdk.connect()
        conv = (await bob_sdk.request("GET", "/api/conversations"))["conversations"][0]["conv"]
        target = await bob_sdk.send(conv, "下周我们去杭州西湖划船吧")
        assert target is not None
        for i in range(150):
            await bob_sdk.send(conv, f"第 {i + 1} 条闲聊")
    finally:
        await bob_sdk.close()

    for page in (alice, bob):
        await page.get_by_test_id("conv").click()
        await expect(stream_msgs(page).filter(has_text="第 150 条闲聊")).to_have_count(1)

    # Reply: Bob asks, Alice answers quoting the question.
    await send_text(bob, "明天几点见面？")
    question = stream_msgs(alice).filter(has_text="明天几点见面？")
    await question.hover()
    await question.get_by_test_id("reply").click()
    await expect(alice.get_by_test_id("reply-bar")).to_contain_text("明天几点见面？")
    await send_text(alice, "上午十点，老地方")
    await expect(alice.get_by_test_id("reply-bar")).to_have_count(0)
    for page in (alice, bob):
        answer = stream_msgs(page).filter(has_text="上午十点，老地方")
        quote = answer.get_by_test_id("quote")
        await expect(quote).to_have_attribute("data-state", "shown")
        await expect(quote).to_contain_text("Bob 李")
        await expect(quote).to_contain_text("明天几点见面？")
    await shot(alice, "reply-01-quote")

    # Bob recalls the question: the reply stays, its quote now says so and no longer shows the text.
    mine = stream_msgs(bob).filter(has_text="明天几点见面？", has_not=bob.get_by_test_id("quote"))
    await mine.hover()
    await mine.get_by_test_id("recall").click()
    for page in (alice, bob):
        answer = stream_msgs(page).filter(has_text="上午十点，老地方")
        await expect(answer.get_by_test_id("quote")).to_have_attribute("data-state", "recalled")
        await expect(answer.get_by_test_id("quote")).to_have_text("原消息已撤回")
        await expect(page.get_by_test_id("stream")).not_to_contain_text("明天几点见面？")
    await shot(alice, "reply-02-recalled")

    # Search after a reload, the chat not opened yet: a Chinese word from 150 messages ago; the hit opens the
    # chat scrolled to it (older pages are loaded down to it).
    await alice.reload()
    await expect(alice.get_by_test_id("conn-status")).to_have_attribute("data-state", "connected")
    await alice.get_by_test_id("chat-search").fill("西湖")
    hit = alice.get_by_test_id("search-hit")
    await expect(hit).to_have_count(1)
    await expect(hit).to_contain_text("下周我们去杭州西湖划船吧")
    await expect(hit).to_have_attribute("data-seq", str(target["seq"]))
    await shot(alice, "search-01-results")
    await hit.click()
    found = alice.locator(f'[data-testid="stream"] [data-seq="{target["seq"]}"]')
    await expect(found).to_contain_text("下周我们去杭州西湖划船吧")
    await expect(found).to_be_in_viewport()
    await expect(found).to_have_class(re.compile(r"\bhighlight\b"))
    # In context: the messages around it are there too, and the newest are still below.
    await expect(stream_msgs(alice).filter(has_text="第 1 条闲聊")).to_have_count(1)
    await expect(stream_msgs(alice).filter(has_text="第 150 条闲聊")).to_have_count(1)
    await shot(alice, "search-02-jumped")
    # The reply read back from history after the reload: its quote is still "recalled".
    answer = stream_msgs(alice).filter(has_text="上午十点，老地方")
    await expect(answer.get_by_test_id("quote")).to_have_attribute("data-state", "recalled")

    # A short query (one character: the bounded scan, not the index) and a miss.
    await alice.get_by_test_id("chat-search").fill("湖")
    await expect(alice.get_by_test_id("search-hit")).to_have_count(1)
    await alice.get_by_test_id("chat-search").fill("长城")
    await expect(alice.get_by_test_id("no-results")).to_be_visible()
    await alice.get_by_test_id("chat-search").fill("")  # clearing the search clears the mark
    await expect(found).not_to_have_class(re.compile(r"\bhighlight\b"))
    assert errors == []
