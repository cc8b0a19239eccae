"""Transport: how devices reach a node. Every transport carries the same JSON protocol frames through the same
:class:`~core.protocol.session.ServerSession` (``core/transport/link.py``), so the protocol's guarantees are the
transport's guarantees, except where an implementation says otherwise:

* delivery: messages are durable before ``message.sent``; pushes are at least once while a device is attached
  (tracked until the device's ack, retried, then dead-lettered) and the store plus ``sync`` repair anything a
  transport loses, so no transport can lose a message, only delay it;
* order: per conversation by ``seq``; a transport may reorder or repeat pushes, devices release by ``seq``;
* identity: every frame a transport feeds in is attributed to an authenticated (user, device); a transport that
  cannot prove who sent something refuses it;
* concurrency: one writer per device link; ``start``/``close`` are called once by the composition root.

A transport contributes HTTP/WebSocket routes to the app and may run background work (the MQTT bridge).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from starlette.routing import BaseRoute


class Transport(Protocol):
    @property
    def name(self) -> str:
        """The registry name (``websocket``, ``stomp``, ``long_poll``, ``short_poll``, ``mqtt``)."""
        ...

    def routes(self) -> Sequence[BaseRoute]:
        """Routes mounted on the node's app (may be empty)."""
        ...

    def describe(self) -> dict[str, object]:
        """How a device connects (path, subprotocol, broker, ...): served at ``GET /api/transports``."""
        ...

    async def start(self) -> None:
        """Called after the node's backends started."""
        ...

    async def close(self) -> None:
        """Stop taking new devices and close this transport's links; called before the backends stop."""
        ...
