from __future__ import annotations

from collections.abc import Sequence

from starlette.routing import BaseRoute, WebSocketRoute

from strategies.transport.base import NodePort
from strategies.transport.config import WebSocketTransportConfig


class NativeWebSocketTransport:
    """The native JSON protocol over WebSocket: meets the interface's guarantees as stated (it defines them).
    Its driver is the node's own endpoint (the hot path, ``core/transport/websocket.py``); this mounts it."""

    name = "websocket"

    def __init__(self, config: WebSocketTransportConfig, port: NodePort) -> None:
        self.config = config
        self.port = port

    def routes(self) -> Sequence[BaseRoute]:
        return [WebSocketRoute(self.config.path, self.port.native_endpoint())]

    def describe(self) -> dict[str, object]:
        return {"kind": self.name, "path": self.config.path, "frames": "JSON text, docs/protocol.md"}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None  # the node closes every registered link (1001) when it stops
