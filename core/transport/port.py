"""The node's side of the transport port (``strategies/transport/base.py``): what a transport driver may ask of
the node, implemented over the :class:`~core.node.Node`, and the device link that writes through a driver's
:class:`~strategies.transport.base.Wire`.

Transports get a :class:`NodeAdapter`, never the node: they cannot reach the stores, the services or the hub, so
the node's rules for a frame are the same whichever transport carried it. The native WebSocket driver is not
behind a wire: it is the node's hot path (``core/transport/websocket.py``) and subclasses the link directly.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from contextlib import suppress

from starlette.websockets import WebSocket

from core.errors import CloseCode
from core.models import Principal, Track
from core.node import Node
from core.protocol.frames import ClientFrame
from core.transport.guard import admit
from core.transport.link import SessionLink
from core.transport.websocket import websocket_endpoint
from strategies.transport.base import LinkLimits, Wire


class PortLink(SessionLink):
    """A device link of a transport driver: the shared session, queue, writer and timer, writing through the
    driver's wire. Implements :class:`~strategies.transport.base.DeviceSession`."""

    def __init__(self, node: Node, wire: Wire, transport: str) -> None:
        super().__init__(node)
        self.TRANSPORT = transport
        self.wire = wire

    # ---------------------------------------------------------------- the wire
    def push(self, frame: str, track: Track | None = None, ts_ms: int | None = None) -> None:
        if self._close_request is not None or self.wire.buffer(frame, track, ts_ms):
            return
        super().push(frame, track, ts_ms)

    async def _write(self, frame: str, track: Track | None) -> bool:
        return await self.wire.write(frame, track)

    async def _close_wire(self, code: CloseCode, reason: str) -> None:
        await self.wire.close_wire(code, reason)

    async def _after_write(self, frame: str, track: Track | None) -> None:
        await self.wire.after_write(frame, track)

    def _keep_on_close(self, frame: str) -> bool:
        return self.wire.keep_on_close(frame) or super()._keep_on_close(frame)

    def _begin_close(self, code: CloseCode, reason: str, *, keep_errors: bool) -> None:
        if self._close_request is not None:
            return
        super()._begin_close(code, reason, keep_errors=keep_errors)
        self.wire.on_close(code, reason, keep_errors)

    async def _handle(self, frame: ClientFrame) -> bool:
        ok = await super()._handle(frame)
        self.wire.handled(ok)
        return ok

    async def _renew(self, token: str) -> None:
        self.wire.check_renew()
        await super()._renew(token)

    # ---------------------------------------------------------------- DeviceSession
    def start(self) -> None:
        self.start_writer()
        self._reschedule()

    async def end(self, code: CloseCode, reason: str) -> None:
        await self._process(self.session.close(code, reason))

    def touch(self) -> None:
        self.session.last_seen = self.node.clock.monotonic()

    def renew(self, exp_ms: int) -> None:
        principal = self.principal
        if principal is None or exp_ms <= principal.exp_ms:
            return
        self.principal = dataclasses.replace(principal, exp_ms=exp_ms)
        self.session.renewed(self._token_deadline(exp_ms))
        self._reschedule()

    def settle(self, conv: str, seq: int) -> None:
        self.session.tracker.settle(conv, seq, self.node.clock.monotonic())

    def written(self, frame: str, track: Track | None, ts_ms: int | None) -> None:
        self._observe_written(frame, track, ts_ms)

    async def wait_closed(self, timeout_s: float) -> None:
        with suppress(TimeoutError):
            await asyncio.wait_for(self._closed.wait(), timeout_s)


class NodeAdapter:
    """The :class:`~strategies.transport.base.NodePort` over one node (built by the composition root)."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self.clock = node.clock
        self.metrics = node.metrics
        self.node_name = node.name
        s = node.settings
        self.limits = LinkLimits(
            max_frame_bytes=s.limits.max_frame_bytes,
            outbound_queue_frames=s.limits.outbound_queue_frames,
            max_pending_deliveries=s.limits.max_pending_deliveries,
            heartbeat_interval_s=s.heartbeat.interval_s,
        )
        self.secret = node.secret

    def attach(self, wire: Wire, transport: str) -> PortLink:
        return PortLink(self._node, wire, transport)

    async def verify_access(self, token: str) -> Principal:
        return await self._node.accounts.verify_access(token)

    async def session_active(self, family: str) -> bool:
        return await self._node.accounts.session_active(family)

    async def may_read(self, user: int, conv: str) -> None:
        await self._node.social.first_readable_seq(user, conv)

    async def admit(self, ws: WebSocket) -> Callable[[], None] | None:
        node = self._node
        return await admit(ws, node.settings.server.origins, node.address_slots)

    def native_endpoint(self) -> Callable[[WebSocket], Awaitable[None]]:
        return websocket_endpoint
