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

A transport is a driver behind a narrow port: it never sees the node. It gets a :class:`NodePort` (the few
things it may ask of the node, and its secrets), and for each device it attaches its :class:`Wire` (how frames
reach that device) and gets back a :class:`DeviceSession` (the node's side of the link: hand in frames, push
frames out, close). The session rules, delivery tracking and services stay in the node, identical for every
transport; ``core/transport/port.py`` implements the port over the node.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from starlette.routing import BaseRoute
from starlette.websockets import WebSocket

from core.clock import Clock
from core.errors import CloseCode
from core.metrics import Metrics
from core.models import Principal, Track
from core.protocol.frames import ClientFrame, ServerFrame


@dataclass(frozen=True, slots=True)
class LinkLimits:
    """The node's settings a transport needs to shape its own buffers and beats."""

    max_frame_bytes: int
    outbound_queue_frames: int
    max_pending_deliveries: int
    heartbeat_interval_s: float


class Wire(ABC):
    """The transport's side of one device link: how an encoded JSON frame reaches the device.

    The node's writer calls ``write`` one frame at a time, in order; ``close_wire`` once, after the last write.
    The hooks have defaults a plain socket needs no more than."""

    @abstractmethod
    async def write(self, frame: str, track: Track | None) -> bool:
        """Write one encoded frame; False if it was not written (it is then not tracked as delivered). Raise
        ``ConnectionError`` when the device is gone."""

    @abstractmethod
    async def close_wire(self, code: CloseCode, reason: str) -> None:
        """Tell the device the link closes, with the close code (or its transport's equivalent)."""

    async def after_write(self, frame: str, track: Track | None) -> None:
        """After a written frame was tracked (STOMP 'auto' subscriptions acknowledge on write)."""
        return

    def keep_on_close(self, frame: str) -> bool:
        """Whether a queued frame is still written when the link closes, beyond the error frames that say why."""
        return False

    def on_close(self, code: CloseCode, reason: str, keep_errors: bool) -> None:
        """The link began to close (once): a transport that runs its own tasks ends them here."""
        return

    def handled(self, ok: bool) -> None:
        """A frame handed in was handled (``ok``) or answered with an error frame (STOMP receipts follow it)."""
        return

    def check_renew(self) -> None:
        """Raise a ``WsimError`` to refuse ``auth.renew`` on this transport (MQTT: a token must not cross the
        broker)."""
        return

    def buffer(self, frame: str, track: Track | None, ts_ms: int | None) -> bool:
        """Take a pushed frame into the transport's own buffer (polling: requests drain it) instead of the
        node's writer; False lets the writer write it."""
        return False


class DeviceSession(Protocol):
    """One attached device as the node sees it: the same session state machine, rate limit, error budget,
    heartbeat reaping, token expiry, delivery tracking and retry for every transport."""

    @property
    def user(self) -> int: ...

    @property
    def device(self) -> str: ...

    @property
    def family(self) -> str: ...

    @property
    def registered(self) -> bool:
        """The device is authenticated and registered with the node's hub."""
        ...

    def closing(self) -> bool: ...

    def start(self) -> None:
        """Start the writer (frames pushed before are kept) and the session's timer (auth timeout)."""
        ...

    async def open(self, principal: Principal, device: str | None) -> bool:
        """Register an already authenticated device and answer ``auth.ok``; False if the node refused it."""
        ...

    async def feed(self, frame: ClientFrame) -> None:
        """A frame the transport decoded itself."""
        ...

    async def feed_data(self, data: str | bytes) -> None:
        """A JSON protocol frame as text: decoded under the session's size limit and error budget."""
        ...

    def push(self, frame: str, track: Track | None = None, ts_ms: int | None = None) -> None: ...

    def push_frame(self, frame: ServerFrame) -> None: ...

    def close(self, code: CloseCode, reason: str) -> None:
        """Close from outside (server shutdown, replaced device): queued frames are dropped."""
        ...

    async def end(self, code: CloseCode, reason: str) -> None:
        """A protocol close: error frames already queued still go out, then the wire closes."""
        ...

    def touch(self) -> None:
        """A sign of life that is not a protocol frame (STOMP heart-beat or ACK, a poll request)."""
        ...

    def renew(self, exp_ms: int) -> None:
        """Extend the link's token deadline to ``exp_ms`` when that is later (fresh credentials)."""
        ...

    def settle(self, conv: str, seq: int) -> None:
        """The device acknowledged exactly this push (STOMP ``client-individual``)."""
        ...

    def written(self, frame: str, track: Track | None, ts_ms: int | None) -> None:
        """A buffered frame reached the device (polling: its cursor passed it): track it, time it."""
        ...

    async def cleanup(self) -> None:
        """Stop the timer and writer, unregister, tell presence (idempotent)."""
        ...

    async def wait_closed(self, timeout_s: float) -> None:
        """Until the writer finished (the wire is closed), at most ``timeout_s``."""
        ...


class NodePort(Protocol):
    """What a transport may ask of the node. Everything else (stores, services, the hub) stays behind it."""

    @property
    def clock(self) -> Clock: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def node_name(self) -> str: ...

    @property
    def limits(self) -> LinkLimits: ...

    @property
    def secret(self) -> bytes:
        """The server secret (the JWT signing key): the MQTT bridge derives device keys and topics from it."""
        ...

    def attach(self, wire: Wire, transport: str) -> DeviceSession:
        """A new, not yet authenticated link whose frames go out through ``wire``."""
        ...

    async def verify_access(self, token: str) -> Principal:
        """The principal of a valid access token; raises ``WsimError`` (unauthorized) otherwise."""
        ...

    async def session_active(self, family: str) -> bool:
        """Whether a login session (token family) is still active (not logged out)."""
        ...

    async def may_read(self, user: int, conv: str) -> None:
        """Raise ``WsimError`` unless ``user`` may read ``conv`` (a STOMP group subscription)."""
        ...

    async def admit(self, ws: WebSocket) -> Callable[[], None] | None:
        """The WebSocket handshake gate (Origin, sockets per address): the release callback, or None after
        refusing the handshake."""
        ...

    def native_endpoint(self) -> Callable[[WebSocket], Awaitable[None]]:
        """The node's own JSON-over-WebSocket endpoint (``/ws``), which lives in the node's hot path."""
        ...


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
