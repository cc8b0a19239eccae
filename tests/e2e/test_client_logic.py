"""The client's pure modules, run in the browser as the page loads them: ordering (the JS mirror of
core/protocol/ordering.py), reconnect backoff, link detection."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Browser, Page

from tests.e2e.conftest import PageErrors, WebServer, new_page


async def run(page: Page, module: str, body: str) -> Any:
    """Import /app/js/<module> in the page and evaluate ``body`` with it bound to ``m``."""
    return await page.evaluate(f"async () => {{ const m = await import('/app/js/{module}'); {body} }}")


@pytest.fixture
async def app(browser: Browser, web: WebServer) -> tuple[Page, PageErrors]:
    """The app's page, loaded so that its modules can be imported, and the errors it reports."""
    errors = PageErrors()
    page = await new_page(browser, errors)
    await page.goto(web.url + "/")
    return page, errors


async def test_ordering_buffer(app: tuple[Page, PageErrors]) -> None:
    page, errors = app
    result = await run(
        page,
        "ordering.js",
        """
        const b = new m.OrderingBuffer(1000);
        const out = {};
        out.unknown = b.offer('c', 5, 'm5', 0);                  // unknown conversation: hold, ask for sync
        out.fromSync = b.setCursor('c', 4);                      // the sync says the stream starts after 4
        out.ahead = b.offer('c', 7, 'm7', 10);                   // a hole at 6
        out.gapsEarly = b.gaps(500);
        out.gapsLate = b.gaps(1010);
        b.markSyncing('c', 1010);
        out.gapsAfterMark = b.gaps(1500);
        out.fill = b.offer('c', 6, 'm6', 1600);                  // releases 6 and 7 in order
        out.dupReleased = b.offer('c', 6, 'again', 1700);
        out.dupBuffered = [b.offer('c', 9, 'm9', 1800).duplicate, b.offer('c', 9, 'x', 1800).duplicate];
        out.cursorsJump = b.setCursor('c', 8);                   // a sync past the buffer releases what follows
        out.cursors = b.cursors();
        out.backwards = b.setCursor('c', 2);
        out.cursorAfter = b.cursor('c');
        const r = new m.OrderingBuffer(1000);
        r.restore({'d': 3, 'bad': -1, 'worse': 'x'});
        out.restored = r.cursors();
        return out;
        """,
    )
    assert result["unknown"] == {"ready": [], "duplicate": False, "needsSync": True}
    assert result["fromSync"] == ["m5"]
    assert result["ahead"]["ready"] == []
    assert result["gapsEarly"] == [] and result["gapsLate"] == ["c"] and result["gapsAfterMark"] == []
    assert result["fill"]["ready"] == ["m6", "m7"]
    assert result["dupReleased"]["duplicate"] is True and result["dupBuffered"] == [False, True]
    assert result["cursorsJump"] == ["m9"]
    assert result["cursors"] == {"c": 9}
    assert result["backwards"] == [] and result["cursorAfter"] == 9
    assert result["restored"] == {"d": 3}
    assert errors == []


async def test_backoff_and_links(app: tuple[Page, PageErrors]) -> None:
    page, errors = app
    delays = await run(
        page,
        "backoff.js",
        """
        const top = () => 0.999999;
        return {
          zero: m.backoffDelayMs(5, {random: () => 0}),
          growth: [0, 1, 2, 3, 4].map((a) => m.backoffDelayMs(a, {random: top})),
          capped: m.backoffDelayMs(40, {random: top}),
          spread: new Set(Array.from({length: 200}, () => m.backoffDelayMs(3))).size,
          reconnect: [0, 1, 2, 3].map((a) => m.reconnectDelayMs(a, {random: top})),
        };
        """,
    )
    assert delays["zero"] == 0
    assert delays["growth"] == [999, 1999, 3999, 7999, 15999]
    assert delays["capped"] == 29999
    assert delays["spread"] > 100  # full jitter: spread over the whole window, not a fixed step
    # Reconnecting: the first attempt after a drop is immediate, then full jitter from 1 s (issue 13: 9-14 s outages).
    assert delays["reconnect"] == [0, 999, 1999, 3999]

    links = await run(
        page,
        "linkify.js",
        """
        const cases = [
          'see https://example.com/a?b=1. ok',
          'javascript:alert(1) and JAVASCRIPT://x',
          '看这个：https://例子.中国/路径，好吗',
          'data:text/html,<script>1</script> http://',
          '(http://a.example/x)',
        ];
        return cases.map((c) => m.linkify(c));
        """,
    )
    assert links[0] == [
        {"text": "see "},
        {"text": "https://example.com/a?b=1", "href": "https://example.com/a?b=1"},
        {"text": ". ok"},
    ]
    assert all("href" not in seg for seg in links[1])
    assert [seg.get("href") for seg in links[2] if "href" in seg] == [
        "https://xn--fsqu00a.xn--fiqs8s/%E8%B7%AF%E5%BE%84"
    ]
    assert links[2][-1] == {"text": "，好吗"}
    assert all("href" not in seg for seg in links[3])
    assert [seg.get("href") for seg in links[4] if "href" in seg] == ["http://a.example/x"]
    assert errors == []
