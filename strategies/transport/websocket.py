from __future__ import annotations

from collections.abc import Sequence

from starlette.routing import BaseRoute, WebSocketRoute

from core.node import Node
from core.transport.websocket import websocket_endpoint
from strategies.transport.config import WebSocketTransportConfig


class NativeWebSocketTransport:
    """The native JSON protocol over WebSocket: meets the interface's guarantees as stated (it defines them)."""

    name = "websocket"

    def __init__(self, config: WebSocketTransportConfig, node: Node) -> None:
        self.config = config
        self.node = node

    def routes(self) -> Sequence[BaseRoute]:
        return [WebSocketRoute(self.config.path, websocket_endpoint)]

    def describe(self) -> dict[str, object]:
        return {"kind": self.name, "path": self.config.path, "frames": "JSON text, docs/protocol.md"}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None  # the node closes every registered link (1001) when it stops
