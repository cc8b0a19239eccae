"""Defences that act before a frame exists: the WebSocket handshake gate and the HTTP header timeout.

Both sit in front of the protocol: the gate decides whether a handshake may become a socket at all (Origin
allowlist, sockets per client address), and the HTTP protocol class closes connections whose request headers do
not arrive in time (slowloris), which uvicorn does not do on its own (its keep-alive timeout runs only between
requests, so a client that sends a request line and then one header byte a minute holds a connection forever).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from core.clock import Clock, Timer
from core.errors import CloseCode, ErrorCode, http_status


def origin_allowed(origin: str | None, allowed: list[str], host: str | None = None) -> bool:
    """Allowed: no Origin (not a browser), a listed Origin, or the page's own origin (the web client served by
    this node, whatever host and port it is reached at). Sockets carry no ambient credentials (the token is in
    the first frame), so same-origin needs no list."""
    if origin is None:
        # not a browser: Origin protects browsers from cross-site sockets, it is not authentication
        return True
    if host and urlsplit(origin).netloc.lower() == host.lower():
        return True
    return "*" in allowed or origin in allowed


class AddressSlots:
    """Open sockets per client address (sans-I/O counter).

    Counted from the handshake, before authentication: the point is that one host cannot hold thousands of
    sockets that never authenticate (each costs memory until ``auth_timeout_s``). Per-user limits come later, in
    the hub, once the user is known."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def acquire(self, address: str) -> bool:
        count = self._open.get(address, 0)
        if count >= self.limit:
            return False
        self._open[address] = count + 1
        return True

    def release(self, address: str) -> None:
        count = self._open.get(address, 0) - 1
        if count <= 0:
            self._open.pop(address, None)
        else:
            self._open[address] = count

    def count(self, address: str) -> int:
        return self._open.get(address, 0)


def client_address(ws: WebSocket) -> str:
    """The peer address as uvicorn reports it (the proxy's, unless ``--proxy-headers`` trusts X-Forwarded-For)."""
    return ws.client.host if ws.client is not None else "unknown"


async def _deny(ws: WebSocket, code: ErrorCode, message: str, headers: dict[str, str] | None = None) -> None:
    """Refuse the handshake with an HTTP status and the usual JSON error body (before accept)."""
    body = {"error": {"code": code.value, "message": message}}
    try:
        await ws.send_denial_response(JSONResponse(body, status_code=http_status(code), headers=headers))
    except RuntimeError:  # a server without the denial-response extension: a bare 403 still refuses
        await ws.close(
            code=int(
                CloseCode.ORIGIN_REJECTED if code is ErrorCode.FORBIDDEN else CloseCode.TOO_MANY_CONNECTIONS
            )
        )


async def admit(ws: WebSocket, origins: list[str], slots: AddressSlots) -> Callable[[], None] | None:
    """The handshake gate shared by every WebSocket transport. Returns the slot's release callback, or None
    after refusing (403 ``forbidden`` for a foreign Origin, 429 ``rate_limited`` for too many sockets from one
    address)."""
    if not origin_allowed(ws.headers.get("origin"), origins, ws.headers.get("host")):
        await _deny(ws, ErrorCode.FORBIDDEN, "Origin not allowed")
        return None
    address = client_address(ws)
    if not slots.acquire(address):
        await _deny(
            ws,
            ErrorCode.RATE_LIMITED,
            f"too many sockets from this address (limit {slots.limit})",
            headers={"Retry-After": "1"},
        )
        return None
    return lambda: slots.release(address)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus a deadline and a size bound for each request's headers
    (``server.header_timeout_s``, ``server.max_header_bytes``).

    The timer starts when the connection opens and again when a new request begins on a kept-alive connection;
    it is cancelled when the headers are complete. On expiry the connection is closed without a response: a
    client that cannot send a few hundred bytes of headers in time is not a client we can serve. More header
    bytes than the bound get 431 and a close (httptools itself buffers headers without a limit)."""

    header_timeout_s: float = 10.0
    max_header_bytes: int = 64 * 1024
    clock: Clock  # the node's, set by guarded_http_protocol

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: Timer | None = None
        self._header_bytes = 0
        self._tail = b""  # the last bytes seen, to find a blank line split across chunks

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_bytes = 0
            self._tail = b""
            self._header_timer = self.clock.call_later(self.header_timeout_s, self._header_timeout)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # Bytes after a complete request (a pipelined or kept-alive next request) restart the deadline; uvicorn
        # cancels its keep-alive timer here, so without this a dribbling client would have no deadline at all.
        if self.cycle is None or self.cycle.response_complete:
            self._arm_header_timer()
        if self._header_timer is not None:
            # Count only the header bytes of this chunk (up to the blank line that ends them), before httptools
            # sees them: a chunk that completes 90 KiB of headers used to pass because the check ran after it
            # (issue 14, L4). uvicorn keeps every header line in memory, so the bound is on what it holds.
            window = self._tail + data
            end = window.find(b"\r\n\r\n")
            head = len(data) if end < 0 else max(0, end + 4 - len(self._tail))
            self._header_bytes += head
            self._tail = window[-3:]
            if self._header_bytes > self.max_header_bytes:
                self._disarm_header_timer()
                self._reject_headers()
                return
        super().data_received(data)

    def _reject_headers(self) -> None:
        body = b'{"error":{"code":"too_large","message":"request headers too large"}}'
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
        )
        self.transport.close()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()


def guarded_http_protocol(
    header_timeout_s: float, max_header_bytes: int, clock: Clock
) -> type[GuardedHttpToolsProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` with this header deadline and size bound, timed on the
    node's clock (so the header deadline is one more timer in its wheel, and fake time drives it in tests)."""
    attrs = {"header_timeout_s": header_timeout_s, "max_header_bytes": max_header_bytes, "clock": clock}
    return type("GuardedHttp", (GuardedHttpToolsProtocol,), attrs)
