"""A transport driver needs nothing of the node beyond its port: the polling wire, driven here by a fake port and
a fake device session, numbers, drains, confirms and closes without a node, a hub or a socket."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.websockets import WebSocket

from core.clock import FakeClock
from core.errors import CloseCode
from core.metrics import Metrics
from core.models import Principal, Track
from core.protocol.frames import ClientFrame, ServerFrame
from strategies.transport.base import DeviceSession, LinkLimits, NodePort, Wire
from strategies.transport.config import LongPollTransportConfig
from strategies.transport.polling import PollingTransport, PollLink


@dataclass
class FakeSession:
    """Records what the wire asks of the node's side of the link."""

    wire: Wire
    user: int = 7
    device: str = "phone"
    family: str = "f1"
    registered: bool = True
    closed: tuple[CloseCode, str] | None = None
    written_frames: list[tuple[str, Track | None, int | None]] = field(default_factory=list)
    cleaned: bool = False

    def closing(self) -> bool:
        return self.closed is not None

    def start(self) -> None:
        return None

    async def open(self, principal: Principal, device: str | None) -> bool:
        return True

    async def feed(self, frame: ClientFrame) -> None:
        return None

    async def feed_data(self, data: str | bytes) -> None:
        return None

    def push(self, frame: str, track: Track | None = None, ts_ms: int | None = None) -> None:
        # As the node's link does: nothing once closing, else the wire may take it into its own buffer.
        if self.closed is None:
            assert self.wire.buffer(frame, track, ts_ms)

    def push_frame(self, frame: ServerFrame) -> None:
        raise AssertionError("not used by these tests")

    def close(self, code: CloseCode, reason: str) -> None:
        if self.closed is None:
            self.closed = (code, reason)
            self.wire.on_close(code, reason, keep_errors=False)

    async def end(self, code: CloseCode, reason: str) -> None:
        if self.closed is None:
            self.closed = (code, reason)
            self.wire.on_close(code, reason, keep_errors=True)

    def touch(self) -> None:
        return None

    def renew(self, exp_ms: int) -> None:
        return None

    def settle(self, conv: str, seq: int) -> None:
        return None

    def written(self, frame: str, track: Track | None, ts_ms: int | None) -> None:
        self.written_frames.append((frame, track, ts_ms))

    async def cleanup(self) -> None:
        self.cleaned = True

    async def wait_closed(self, timeout_s: float) -> None:
        return None


class FakePort:
    def __init__(self, queue_frames: int = 3) -> None:
        self.clock = FakeClock()
        self.metrics = Metrics()
        self.node_name = "test"
        self.limits = LinkLimits(
            max_frame_bytes=65536,
            outbound_queue_frames=queue_frames,
            max_pending_deliveries=100,
            heartbeat_interval_s=30.0,
        )
        self.secret = b"s" * 32
        self.sessions: list[FakeSession] = []

    def attach(self, wire: Wire, transport: str) -> FakeSession:
        session = FakeSession(wire)
        self.sessions.append(session)
        return session

    async def verify_access(self, token: str) -> Principal:
        raise AssertionError("not used by these tests")

    async def session_active(self, family: str) -> bool:
        return True

    async def may_read(self, user: int, conv: str) -> None:
        return None

    async def admit(self, ws: WebSocket) -> Callable[[], None] | None:
        return None

    def native_endpoint(self) -> Callable[[WebSocket], Awaitable[None]]:
        raise AssertionError("not used by these tests")


def _poll_link(queue_frames: int = 3) -> tuple[PollLink, FakeSession]:
    port = FakePort(queue_frames)
    typed: NodePort = port  # the fake is a complete port (mypy checks it here)
    link = PollLink(typed, PollingTransport(LongPollTransportConfig(), typed))
    session: DeviceSession = port.sessions[0]
    assert link.link is session
    return link, port.sessions[0]


async def test_poll_wire_numbers_frames_and_confirm_hands_them_to_the_node() -> None:
    link, session = _poll_link()
    track = Track(11, "d:1:2", 5)
    session.push('{"type":"message.new"}', track, 123)
    session.push('{"type":"typing"}')
    assert link.pending_after(0, 10) == (2, ['{"type":"message.new"}', '{"type":"typing"}'])
    link.confirm(1)
    assert session.written_frames == [('{"type":"message.new"}', track, 123)]
    assert link.pending_after(1, 10) == (2, ['{"type":"typing"}'])
    link.confirm(1)  # a repeated cursor confirms nothing twice
    assert len(session.written_frames) == 1


async def test_poll_wire_closes_the_link_4008_when_its_buffer_is_full() -> None:
    link, session = _poll_link(queue_frames=2)
    for i in range(3):
        session.push(f'{{"type":"x","n":{i}}}')
    assert session.closed is not None and session.closed[0] == CloseCode.SLOW_CONSUMER
    assert link.closed_info == (int(CloseCode.SLOW_CONSUMER), session.closed[1])
    await asyncio.sleep(0)  # the wire ends its link in a task
    assert session.cleaned


async def test_poll_wire_keeps_only_error_frames_on_a_protocol_close() -> None:
    link, session = _poll_link()
    session.push('{"type":"typing"}')
    session.push('{"type":"error","code":"bad_frame"}')
    await session.end(CloseCode.PROTOCOL_ERROR, "bad")
    assert link.pending_after(0, 10)[1] == ['{"type":"error","code":"bad_frame"}']
    session.push('{"type":"typing"}')  # nothing is taken once closing
    assert link.pending_after(0, 10)[1] == ['{"type":"error","code":"bad_frame"}']
