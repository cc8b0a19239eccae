"""The web client's page and assets as served by a real node: security headers, no inline script, the vendored
libraries' pinned versions, and the same-origin socket rule the page relies on."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from core.web_client import WEB_DIR, content_security_policy
from tests.conftest import ServerFactory
from tests.support.server import RunningServer


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline_handlers: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts.append(dict(attrs))
        self.inline_handlers += [name for name, _ in attrs if name.startswith("on")]


def csp_directives(header: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in header.split(";"):
        name, *values = part.split()
        out[name] = values
    return out


async def test_app_page_headers_and_no_inline_script(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        resp = await http.get("/")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    h = resp.headers
    assert h["x-content-type-options"] == "nosniff"
    assert h["x-frame-options"] == "DENY"
    assert h["referrer-policy"] == "no-referrer"
    csp = csp_directives(h["content-security-policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval'
    assert csp["style-src"] == ["'self'"]
    assert csp["img-src"] == ["'self'", "blob:", "data:"]
    host = server.url.removeprefix("http://")
    assert csp["connect-src"] == ["'self'", f"ws://{host}", f"wss://{host}"]
    assert csp["frame-ancestors"] == ["'none'"] and csp["base-uri"] == ["'none'"]
    parser = _Scripts()
    parser.feed(resp.text)
    assert parser.scripts == [{"type": "module", "src": "/app/js/main.js"}]
    assert parser.inline_handlers == []


async def test_assets_are_served_with_the_same_headers(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        js = await http.get("/app/js/main.js")
        css = await http.get("/app/app.css")
        vue = await http.get("/app/vendor/vue/vue.runtime.esm-browser.prod.js")
        traversal = await http.get("/app/../web_client.py")
        missing = await http.get("/app/js/nope.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    for resp in (js, css, vue):
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert "script-src 'self'" in resp.headers["content-security-policy"]
        assert resp.headers["cache-control"] == "no-cache" and resp.headers["etag"]
    assert traversal.status_code == 404 and missing.status_code == 404
    # The vendored build is the pinned version, and the page's modules use eval nowhere.
    pinned = (WEB_DIR / "vendor" / "vue" / "VERSION").read_text().strip()
    assert vue.text.startswith(f"/**\n* vue v{pinned}\n")
    for path in Path(WEB_DIR / "js").rglob("*.js"):
        source = path.read_text(encoding="utf-8")
        assert not re.search(
            r"\beval\(|new Function|innerHTML|v-html|insertAdjacentHTML|document\.write", source
        ), path


async def test_client_config_and_web_client_switch(start_server: ServerFactory) -> None:
    srv = await start_server({"limits": {"recall_window_s": 30, "max_text_chars": 900}})
    async with httpx.AsyncClient(base_url=srv.url) as http:
        cfg = (await http.get("/api/client-config")).json()
    assert cfg == {
        "recall_window_s": 30.0,
        "max_text_chars": 900,
        "upload_max_bytes": 20 * 1024 * 1024,
        "history_page_max": 200,
    }
    off = await start_server({"server": {"web_client": False}})
    async with httpx.AsyncClient(base_url=off.url) as http:
        page = await http.get("/")
        asset = await http.get("/app/js/main.js")
        health = await http.get("/healthz")
    assert page.status_code == 404 and asset.status_code == 404 and health.status_code == 200
    assert page.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("host", "expected_connect"),
    [
        ("chat.example.com", "connect-src 'self' ws://chat.example.com wss://chat.example.com"),
        ("[::1]:8000", "connect-src 'self' ws://[::1]:8000 wss://[::1]:8000"),
        ("evil; script-src *", "connect-src 'self';"),
        ("a b", "connect-src 'self';"),
        (None, "connect-src 'self';"),
    ],
)
def test_csp_host_is_only_copied_when_plain(host: str | None, expected_connect: str) -> None:
    csp = content_security_policy(host)
    assert expected_connect in csp + ";"
    assert csp.count("script-src") == 1


async def test_socket_accepts_its_own_origin_only(server: RunningServer) -> None:
    ws = server.url.replace("http://", "ws://") + "/ws"
    async with connect(ws, origin=server.url):  # type: ignore[arg-type]
        pass  # the page served by this node, whatever port it runs on
    with pytest.raises(InvalidStatus) as info:
        async with connect(ws, origin="http://127.0.0.1:1"):  # type: ignore[arg-type]
            pass
    assert info.value.response.status_code == 403


async def test_api_docs_assets_are_served_locally(server: RunningServer) -> None:
    """/docs and /redoc load Swagger UI and ReDoc from this server (the fastapi-offline package), not a CDN."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        for page in ("/docs", "/redoc"):
            resp = await http.get(page)
            assert resp.status_code == 200, page
            sources = re.findall(r'(?:src|href)="([^"]+)"', resp.text)
            assert sources and all(s.startswith("/docs-assets/") for s in sources), (page, sources)
            for src in sources:
                asset = await http.get(src)
                assert asset.status_code == 200 and len(asset.content) > 1000, src
