"""The everyday defects of issue 13, each driven in Chromium as a person meets it: translated form errors with the
rules shown up front, the confirm dialog's button, the creator's toast and where toasts go, the New-group button,
the emoji font, the friend notice that is not a message, "@bob · 在线", logout on a phone, and /docs offline."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.async_api import Browser, Page, Route, expect

from core.errors import ErrorCode
from core.sdk import WsimClient
from tests.e2e.conftest import PASSWORD, PageErrors, WebServer, new_page, register

# Records every toast ever shown (they vanish after a few seconds), to check at the end which ones appeared.
RECORD_TOASTS = """
window.__toasts = [];
new MutationObserver(() => {
  for (const el of document.querySelectorAll('[data-testid=toast]')) {
    if (!el.dataset.seen) { el.dataset.seen = '1'; window.__toasts.push(el.textContent); }
  }
}).observe(document, { subtree: true, childList: true });
"""


async def error_texts(page: Page, errors: list[dict[str, str]]) -> list[str]:
    texts: list[str] = await page.evaluate(
        "async (errs) => { const m = await import('/app/js/i18n.js'); return errs.map((e) => m.errorText(e)); }",
        errors,
    )
    return texts


async def test_forms_toasts_and_layout(browser: Browser, web: WebServer) -> None:
    errors = PageErrors()
    page = await new_page(browser, errors)
    await page.add_init_script(RECORD_TOASTS)
    bob = WsimClient(web.url)
    try:
        await bob.register("bob", PASSWORD, "Bob 李")
        await bob.connect()

        # Sign-up: the rules are on screen before anything is submitted, and every refusal is in Chinese.
        await page.goto(web.url + "/")
        await page.get_by_test_id("tab-register").click()
        await expect(page.get_by_test_id("password-rule")).to_have_text("至少 8 个字符")
        await expect(page.get_by_test_id("username-rule")).to_contain_text("3–32 个字符")
        await page.locator("input[name=username]").fill("alice")
        await page.locator("input[name=password]").fill("short")
        await expect(page.get_by_test_id("password-rule")).to_have_class("pw-rule bad")
        await page.get_by_test_id("submit").click()
        await expect(page.get_by_test_id("login-error")).to_have_text("密码需要 8–128 个字符")
        await page.locator("input[name=username]").fill("bob")  # taken
        await page.locator("input[name=password]").fill(PASSWORD)
        await page.get_by_test_id("submit").click()
        await expect(page.get_by_test_id("login-error")).to_have_text("已存在（用户名可能已被占用）")
        # What the server says to a form, field by field and code by code, never reaches the reader in English.
        server_said = [
            {"code": "invalid", "message": "password: String should have at least 8 characters"},
            {"code": "invalid", "message": "username: String should match pattern '^[A-Za-z0-9_.-]{3,32}$'"},
            {"code": "invalid", "message": "display_name: String should have at most 64 characters"},
            {"code": "invalid", "message": "something else: odd"},
            *({"code": code.value, "message": "an English sentence"} for code in ErrorCode),
        ]
        for said, shown in zip(server_said, await error_texts(page, server_said), strict=True):
            assert "English" not in shown and "String" not in shown and "出错了：" not in shown, (said, shown)
        assert (await error_texts(page, server_said[:1])) == ["密码需要 8–128 个字符"]

        await register(page, web.url, "alice", "Alice 王")

        # Alice asks, Bob accepts: the "you are friends now" notice is not an unread message.
        await page.get_by_test_id("nav-contacts").click()
        await page.get_by_test_id("sub-find").click()
        await page.get_by_test_id("user-search").fill("bob")
        await page.get_by_test_id("user-search-go").click()
        await page.get_by_test_id("add-friend").click()
        toast = page.get_by_test_id("toast").filter(has_text="好友申请已发送")
        await expect(toast).to_be_visible()
        box = await toast.bounding_box()
        assert box and box["y"] > 100, box  # bottom of the window: never over a chat header
        requests = await bob.request("GET", "/api/friends/requests")
        await bob.request("POST", f"/api/friends/requests/{requests['incoming'][0]['id']}/accept")
        await page.get_by_test_id("nav-chats").click()
        await expect(page.get_by_test_id("conv-preview")).to_have_text("你们已经是好友了，开始聊天吧")
        await expect(page.get_by_test_id("conv").get_by_test_id("unread")).to_have_count(0)
        await expect(page.get_by_test_id("nav-chats-badge")).to_have_count(0)
        await expect(page).to_have_title("wsim")

        # The friend's line reads "@bob · 在线", with its spaces.
        await page.get_by_test_id("nav-contacts").click()
        await page.get_by_test_id("sub-friends").click()
        await expect(page.get_by_test_id("friend-sub")).to_have_text("@bob · 在线")

        # The New-group button stays inside its pane.
        button = await page.get_by_test_id("new-group").bounding_box()
        pane = await page.locator(".list-pane").bounding_box()
        assert button and pane and button["x"] + button["width"] <= pane["x"] + pane["width"], (button, pane)

        # One colour emoji font is named in the font stack (mixed outline/colour emoji otherwise).
        font = await page.evaluate("getComputedStyle(document.body).fontFamily")
        assert "Noto Color Emoji" in font and "Apple Color Emoji" in font, font

        # The creator is not told she was added to the group she just made.
        await page.get_by_test_id("new-group").click()
        await page.get_by_test_id("new-group-name").fill("周末爬山")
        await page.get_by_test_id("pick").first.check()
        await page.get_by_test_id("create-group").click()
        await expect(page.get_by_test_id("chat-title")).to_have_text("周末爬山")
        created = page.get_by_test_id("stream").get_by_test_id("msg").filter(has_text="创建了群聊")
        await expect(created).to_have_count(1)

        # The confirm dialog speaks the reader's language; Cancel keeps the session, its OK logs out.
        await page.get_by_test_id("logout").click()
        dialog = page.get_by_test_id("confirm")
        await expect(dialog).to_contain_text("确定退出登录吗？")
        await expect(dialog.get_by_test_id("confirm-ok")).to_have_text("确定")
        await dialog.get_by_role("button", name="取消").click()
        await expect(dialog).to_have_count(0)
        await expect(page.get_by_test_id("shell")).to_be_visible()
        # By now the group notice has long been handled (the chat, its history and a dialog came after it).
        shown: list[str] = await page.evaluate("window.__toasts")
        assert "好友申请已发送" in shown and not any("你被加入了群聊" in x for x in shown), shown
        await page.get_by_test_id("logout").click()
        await dialog.get_by_test_id("confirm-ok").click()
        await expect(page.get_by_test_id("login")).to_be_visible()
    finally:
        await bob.close()
    # Chromium logs every refused request; the one expected is the taken username's 409.
    taken = "console: Failed to load resource: the server responded with a status of 409 (Conflict)"
    assert errors == [taken], errors


async def test_phone_logout_is_in_a_menu_and_confirmed(browser: Browser, web: WebServer) -> None:
    errors = PageErrors()
    page = await new_page(browser, errors, viewport=(390, 844))
    await register(page, web.url, "mei", "小美")
    # The tab bar holds the two tabs only; language and log out are in the header's menu.
    await expect(page.get_by_test_id("logout")).to_be_hidden()
    await expect(page.get_by_test_id("lang")).to_be_hidden()
    await expect(page.locator(".rail .rail-btn:visible")).to_have_count(2)
    await page.get_by_test_id("me-menu").click()
    await page.get_by_test_id("menu-logout").click()
    dialog = page.get_by_test_id("confirm")
    await expect(dialog).to_contain_text("确定退出登录吗？")
    await dialog.get_by_role("button", name="取消").click()
    await expect(page.get_by_test_id("shell")).to_be_visible()
    await page.get_by_test_id("me-menu").click()
    await page.get_by_test_id("menu-logout").click()
    await dialog.get_by_test_id("confirm-ok").click()
    await expect(page.get_by_test_id("login")).to_be_visible()
    assert errors == [], errors


async def test_api_docs_work_offline(browser: Browser, web: WebServer) -> None:
    """/docs with every request off this server refused, as on a machine without internet."""
    errors = PageErrors()
    page = await new_page(browser, errors)
    elsewhere: list[str] = []

    async def only_local(route: Route) -> None:
        if urlsplit(route.request.url).netloc == urlsplit(web.url).netloc:
            await route.continue_()
        else:
            elsewhere.append(route.request.url)
            await route.abort()

    await page.route("**/*", only_local)
    await page.goto(web.url + "/docs")
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("wsim")
    await expect(page.locator(".opblock").first).to_be_visible()
    assert elsewhere == [], elsewhere
    await page.goto(web.url + "/redoc")
    await expect(page.locator("redoc, .redoc-wrap").first).to_be_attached()
    await expect(page.get_by_text("wsim").first).to_be_visible()
    # ReDoc's bundle still asks its CDN for the "powered by" logo in its side bar; the page works without it.
    assert [u for u in elsewhere if not u.endswith("/logo-mini.svg")] == [], elsewhere
    assert [e for e in errors if "ERR_FAILED" not in e] == [], errors
