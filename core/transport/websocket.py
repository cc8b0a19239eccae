"""Native JSON-over-WebSocket transport (``/ws``).

The driver is deliberately thin: it reads frames and hands them, with the time, to :class:`ServerSession`; it
runs the services the session asks for; a per-connection writer drains a bounded queue so that fan-out never
waits on one device; one clock timer per connection wakes the session at its next deadline. Everything but the socket
itself is shared with the other transports in :mod:`core.transport.link`.
"""

from __future__ import annotations

from starlette.websockets import WebSocket, WebSocketDisconnect

from core.errors import CloseCode
from core.models import Track
from core.node import Node
from core.protocol.frames import Auth
from core.transport.guard import admit, origin_allowed
from core.transport.link import SessionLink, session_limits

__all__ = ["WebSocketConnection", "origin_allowed", "session_limits", "websocket_endpoint"]

TRANSPORT = "ws"


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
                await self.feed_data(data)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            await self.cleanup()


async def websocket_endpoint(ws: WebSocket) -> None:
    node: Node = ws.app.state.node
    release = await admit(ws, node.settings.server.origins, node.address_slots)
    if release is None:
        return  # refused before accept: the handshake got an HTTP error with a JSON body
    try:
        await WebSocketConnection(ws, node).run()
    finally:
        release()
