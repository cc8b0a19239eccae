"""Whatever people type (messages, file names, display names, group names) is shown as text, never run."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from core.sdk import WsimClient
from tests.e2e.conftest import PASSWORD, PageErrors, WebServer, new_page, register, stream_msgs

PAYLOADS = [
    '<img src=x onerror="window.__pwned=1">',
    "<script>window.__pwned=2</script>",
    '"><svg onload=window.__pwned=3>',
    "javascript:window.__pwned=4",
    "{{ constructor.constructor('window.__pwned=5')() }}",
]
FILE_NAME = "<img src=x onerror=window.__pwned=6>'.txt"  # multipart clients escape double quotes
DISPLAY_NAME = "<b>Mallory</b><img src=x onerror=window.__pwned=7>"


async def test_payloads_render_as_text(browser: Browser, web: WebServer) -> None:
    errors = PageErrors()
    page = await new_page(browser, errors)
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    await register(page, web.url, "victim", "Victim")
    me = await page.evaluate("JSON.parse(localStorage.getItem('wsim.auth')).user.id")

    mallory = WsimClient(web.url)
    try:
        await mallory.register("mallory", PASSWORD, DISPLAY_NAME)
        await mallory.connect()
        await mallory.request("POST", "/api/friends/requests", json={"user_id": me})
        await page.get_by_test_id("nav-contacts").click()
        await page.get_by_test_id("sub-requests").click()
        await expect(page.get_by_test_id("request")).to_contain_text(DISPLAY_NAME)
        await page.get_by_test_id("request").get_by_test_id("accept").click()
        conv = mallory.direct_conv(mallory.user_id, me)
        await mallory.next_message()  # the friendship notice
        for text in PAYLOADS:
            await mallory.send(conv, text)
        meta = await mallory.upload(b"harmless\n", FILE_NAME)
        await mallory.send(conv, kind="file", file=meta["id"])
        group = await mallory.create_group('<iframe src="javascript:window.__pwned=8">', [me])

        await page.get_by_test_id("nav-chats").click()
        await page.locator(f"[data-testid=conv][data-conv='{conv}']").click()
        await expect(page.get_by_test_id("chat-title")).to_have_text(DISPLAY_NAME)
        shown = stream_msgs(page).locator(".text")
        await expect(shown).to_have_count(len(PAYLOADS))
        assert [t.strip() for t in await shown.all_inner_texts()] == PAYLOADS
        await expect(page.get_by_test_id("file-name")).to_have_text(FILE_NAME)
        # The javascript: text did not become a link; nothing injected an element.
        await expect(page.get_by_test_id("stream").locator("a[href^='javascript']")).to_have_count(0)
        await expect(page.locator("img[src=x], script:not([src]), svg[onload], iframe")).to_have_count(0)
        group_row = page.locator(f"[data-testid=conv][data-conv='{group['conv']}']")
        await expect(group_row.get_by_test_id("conv-name")).to_have_text(group["name"])
        await group_row.click()
        await expect(page.get_by_test_id("chat-title")).to_have_text(group["name"])
        await expect(page.locator("iframe")).to_have_count(0)
        assert await page.evaluate("window.__pwned") is None
        assert dialogs == []
    finally:
        await mallory.close()
    # The CSP would also have refused inline script; it was never needed, so it reported nothing.
    assert [e for e in errors if "Content Security Policy" in e] == []
    assert errors == [], errors
