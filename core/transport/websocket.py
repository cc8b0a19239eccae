"""Native JSON-over-WebSocket transport (``/ws``).

The driver is deliberately thin: it reads frames and hands them, with the time, to :class:`ServerSession`; it
runs the services the session asks for; a per-connection writer drains a bounded queue so that fan-out never
waits on one device; one timer per connection wakes the session at its next deadline. Everything but the socket
itself is shared with the other transports in :mod:`core.transport.link`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.websockets import WebSocket, WebSocketDisconnect

from core.errors import CloseCode
from core.node import Node
from core.protocol.frames import Auth
from core.routing import Track
from core.transport.link import SessionLink, session_limits

__all__ = ["WebSocketConnection", "origin_allowed", "session_limits", "websocket_endpoint"]

TRANSPORT = "ws"


def origin_allowed(origin: str | None, allowed: list[str], host: str | None = None) -> bool:
    """Allowed: no Origin (not a browser), a listed Origin, or the page's own origin (the web client served by
    this node, whatever host and port it is reached at). Sockets carry no ambient credentials (the token is in
    the first frame), so same-origin needs no list."""
    if origin is None:
        return (
            True  # not a browser: Origin protects browsers from cross-site sockets, it is not authentication
        )
    if host and urlsplit(origin).netloc.lower() == host.lower():
        return True
    return "*" in allowed or origin in allowed


class WebSocketConnection(SessionLink):
    """One socket: the session state machine plus its queue, writer task and timer. Implements DeviceLink."""

    TRANSPORT = TRANSPORT

    def __init__(self, ws: WebSocket, node: Node) -> None:
        super().__init__(node)
        self.ws = ws

    async def _write(self, frame: str, track: Track | None) -> bool:
        try:
            await self.ws.send_text(frame)
        except WebSocketDisconnect as exc:
            raise ConnectionError("socket closed") from exc
        return True

    async def _close_wire(self, code: CloseCode, reason: str) -> None:
        await self.ws.close(code=int(code), reason=reason[:120])

    async def run(self) -> None:
        ws = self.ws
        node = self.node
        await ws.accept()
        self.start_writer()
        self._reschedule()
        try:
            auth_header = ws.headers.get("authorization", "")
            if auth_header.lower().startswith("bearer "):
                await self.feed(
                    Auth(type="auth", token=auth_header[7:].strip(), device=ws.headers.get("x-wsim-device"))
                )
            while self._close_request is None:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                data: str | bytes | None = message.get("text")
                if data is None:
                    data = message.get("bytes") or b""
                await self._process(self.session.receive_data(data, node.clock.monotonic()))
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            await self.cleanup()


async def websocket_endpoint(ws: WebSocket) -> None:
    node: Node = ws.app.state.node
    if not origin_allowed(ws.headers.get("origin"), node.settings.server.origins, ws.headers.get("host")):
        await ws.close(code=int(CloseCode.ORIGIN_REJECTED))  # before accept: the handshake gets HTTP 403
        return
    await WebSocketConnection(ws, node).run()
