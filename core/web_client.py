"""Serves the browser chat client (static files in ``core/web/``) from the same server, with strict headers.

The client is plain ES modules plus a vendored Vue runtime (``core/web/vendor/README.md``): no build step. The app
page gets a Content-Security-Policy that allows scripts, styles and fonts from this origin only, images from this
origin (signed file links) and ``blob:``/``data:`` (local previews before upload), and sockets/XHR only to this
host. Nothing user-provided is ever turned into markup by the client, and the CSP is the second line if it were.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.api.deps import NodeDep

WEB_DIR = Path(__file__).parent / "web"
ASSETS_PREFIX = "/app"

# A Host header is only copied into the CSP when it is a plain host[:port]; anything else gets 'self' alone.
_HOST_RE = re.compile(r"^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?$")

BASE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # Signed file links are bearer capabilities in URLs: never leak them (or anything else) through Referer.
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


def content_security_policy(host: str | None) -> str:
    connect = "'self'"
    if host and _HOST_RE.match(host):
        # CSP3 lets 'self' match ws(s) to the same host; older engines need the socket origins spelled out.
        connect += f" ws://{host} wss://{host}"
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' blob: data:",
            "font-src 'self'",
            f"connect-src {connect}",
            "manifest-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def security_headers(host: str | None) -> dict[str, str]:
    return {**BASE_HEADERS, "Content-Security-Policy": content_security_policy(host)}


class _SecureStatic:
    """StaticFiles with the same security headers on every asset, revalidated on each load (ETag)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        host = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"host"), None)
        extra = [(k.lower().encode(), v.encode()) for k, v in security_headers(host).items()]
        extra.append((b"cache-control", b"no-cache"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class ClientConfigOut(BaseModel):
    """Limits the web client shows to people before the server would refuse (it still checks every one)."""

    recall_window_s: float
    max_text_chars: int
    upload_max_bytes: int
    history_page_max: int


router = APIRouter(tags=["web client"])


@router.get("/api/client-config", response_model=ClientConfigOut)
async def client_config(node: NodeDep) -> ClientConfigOut:
    limits = node.settings.limits
    return ClientConfigOut(
        recall_window_s=limits.recall_window_s,
        max_text_chars=limits.max_text_chars,
        upload_max_bytes=limits.upload_max_bytes,
        history_page_max=limits.history_page_max,
    )


def mount_web_client(app: FastAPI) -> None:
    """``/`` is the app page, ``/app/*`` its modules, styles and vendored libraries."""
    index = WEB_DIR / "index.html"

    async def page(request: Request) -> Response:
        headers = {**security_headers(request.headers.get("host")), "Cache-Control": "no-cache"}
        return FileResponse(index, media_type="text/html; charset=utf-8", headers=headers)

    app.include_router(router)
    app.add_api_route("/", page, methods=["GET", "HEAD"], include_in_schema=False)
    app.mount(ASSETS_PREFIX, _SecureStatic(StaticFiles(directory=WEB_DIR)), name="web")
