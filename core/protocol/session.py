"""The server side of one device connection, as a state machine (sans-I/O).

Fed with raw frame data and ``now`` (monotonic seconds); returns events: frames to handle, frames to send,
redeliveries, dead letters, and at most one close. It owns everything that does not need I/O: the auth phase and
its timeout, heartbeat reaping, access-token expiry on an open socket, the per-connection rate limit and error
budget, frame size, and the delivery tracker. Services (store, fan-out) stay outside, in the driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from core.errors import CloseCode, ErrorCode
from core.protocol import codec
from core.protocol.frames import (
    Auth,
    ClientFrame,
    ErrorFrame,
    MessageAck,
    MessageRecall,
    MessageSend,
    ServerFrame,
    Sync,
    Typing,
)
from core.protocol.ratelimit import TokenBucket
from strategies.ack.base import DeliveryTracker, GiveUp, Pending, Resend


class Phase(Enum):
    AWAIT_AUTH = "await_auth"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class SessionLimits:
    max_frame_bytes: int = 64 * 1024
    auth_timeout_s: float = 10.0
    heartbeat_interval_s: float = 30.0
    missed_heartbeats: int = 2  # reap after interval * missed of silence
    rate_per_s: float = 20.0  # message.send / recall / typing / sync frames
    rate_burst: float = 40.0
    rate_strikes: int = 20  # rejected frames tolerated (refilling at 1/s) before closing
    error_budget: int = 10  # malformed frames tolerated (refilling at 1 per 10 s) before closing


# ------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class Handle:
    """A valid frame the driver must act on (auth, ping, send, ack, read, recall, sync, typing, renew)."""

    frame: ClientFrame


@dataclass(frozen=True, slots=True)
class SendFrame:
    frame: ServerFrame


@dataclass(frozen=True, slots=True)
class Redeliver:
    pending: Pending


@dataclass(frozen=True, slots=True)
class DeadLettered:
    pending: Pending


@dataclass(frozen=True, slots=True)
class Close:
    code: CloseCode
    reason: str


SessionEvent = Handle | SendFrame | Redeliver | DeadLettered | Close

_RATED = (MessageSend, MessageRecall, Typing, Sync)


class ServerSession:
    def __init__(self, limits: SessionLimits, tracker: DeliveryTracker, now: float) -> None:
        self.limits = limits
        self.tracker = tracker
        self.phase = Phase.AWAIT_AUTH
        self.opened_at = now
        self.last_seen = now
        # The auth timeout bounds how long a client may take to *send* its auth frame (a socket held open without
        # one); once it has arrived, a server slow to verify it (a busy node) must not close it as unauthorized,
        # which tells a client to stop reconnecting.
        self._auth_deadline: float | None = now + limits.auth_timeout_s
        self._token_deadline: float | None = None
        self._bucket = TokenBucket(limits.rate_per_s, limits.rate_burst, now)
        self._strikes = TokenBucket(1.0, limits.rate_strikes, now)
        # Rate-limit episodes (issue 14, M4): a refused frame that arrives once the previous refusal's
        # retry_after_ms has passed starts an episode in which the first ``rate_burst`` refusals are free: they
        # were in flight (a backlog flushed after a reconnect) or the client waited as told. Only refusals
        # beyond those, before the wait is over, are strikes.
        self._retry_at = now
        self._free_refusals = 0
        self._budget = TokenBucket(0.1, limits.error_budget, now)
        self.close_code: CloseCode | None = None

    # -------------------------------------------------------------- input

    def receive_data(self, data: str | bytes, now: float) -> list[SessionEvent]:
        if self.phase is Phase.CLOSED:
            return []
        size = len(data) if isinstance(data, bytes) else len(data.encode())
        if size > self.limits.max_frame_bytes:
            return self._close(
                CloseCode.MESSAGE_TOO_BIG, f"frame of {size} bytes > {self.limits.max_frame_bytes}"
            )
        self.last_seen = now
        try:
            frame = codec.decode(data)
        except codec.FrameError as err:
            return self._bad_input(err.code, err.message, err.ref, now, err.req)
        return self.receive_frame(frame, now)

    def receive_frame(self, frame: ClientFrame, now: float) -> list[SessionEvent]:
        """Entry point for transports with their own codec (STOMP, HTTP polling): same rules after decoding."""
        if self.phase is Phase.CLOSED:
            return []
        self.last_seen = now
        if self.phase is Phase.AWAIT_AUTH:
            if isinstance(frame, Auth):
                self._auth_deadline = None
                return [Handle(frame)]
            return self._close(CloseCode.UNAUTHORIZED, "the first frame must be 'auth'")
        if isinstance(frame, Auth):
            return self._bad_input(
                ErrorCode.INVALID, "already authenticated (use auth.renew)", "auth", now, frame.req
            )
        if isinstance(frame, _RATED) and not self._bucket.take(now):
            retry_ms = int(self._bucket.retry_after_s(now) * 1000) + 1
            ref = frame.cmid if isinstance(frame, MessageSend) else frame.type
            events: list[SessionEvent] = [
                SendFrame(
                    ErrorFrame(
                        code=ErrorCode.RATE_LIMITED,
                        message="message rate exceeded",
                        ref=ref,
                        retry_after_ms=retry_ms,
                        req=frame.req,
                    )
                )
            ]
            if now >= self._retry_at:
                self._free_refusals = int(self.limits.rate_burst)
            self._retry_at = now + retry_ms / 1000
            if self._free_refusals > 0:
                self._free_refusals -= 1
            elif not self._strikes.take(now):
                events += self._close(CloseCode.RATE_LIMITED, "kept exceeding the message rate")
            return events
        if isinstance(frame, MessageAck):
            self.tracker.ack(frame.conv, frame.seq, now)
        return [Handle(frame)]

    def _bad_input(
        self, code: ErrorCode, message: str, ref: str | None, now: float, req: str | None = None
    ) -> list[SessionEvent]:
        events: list[SessionEvent] = [SendFrame(ErrorFrame(code=code, message=message, ref=ref, req=req))]
        if not self._budget.take(now):
            events += self._close(CloseCode.PROTOCOL_ERROR, "too many malformed frames")
        elif self.phase is Phase.AWAIT_AUTH:
            events += self._close(CloseCode.UNAUTHORIZED, "the first frame must be a valid 'auth'")
        return events

    # -------------------------------------------------------------- auth

    def opened(self, token_deadline: float, now: float) -> None:
        """The driver verified the auth frame; ``token_deadline`` is when the access token expires."""
        self.phase = Phase.OPEN
        self._token_deadline = token_deadline
        self.last_seen = now

    def renewed(self, token_deadline: float) -> None:
        self._token_deadline = token_deadline

    def auth_failed(self, code: ErrorCode, message: str) -> list[SessionEvent]:
        return [
            SendFrame(ErrorFrame(code=code, message=message, ref="auth")),
            *self._close(CloseCode.UNAUTHORIZED, message),
        ]

    # -------------------------------------------------------------- delivery

    def delivered(self, msg_id: int, conv: str, seq: int, frame: str, now: float) -> None:
        """A message.new frame was queued to this device; track it until acked."""
        if self.phase is Phase.OPEN:
            self.tracker.track(msg_id, conv, seq, frame, now)

    # -------------------------------------------------------------- time

    def heartbeat_deadline(self) -> float:
        return self.last_seen + self.limits.heartbeat_interval_s * self.limits.missed_heartbeats

    def next_deadline(self) -> float | None:
        if self.phase is Phase.CLOSED:
            return None
        if self.phase is Phase.AWAIT_AUTH:
            return self._auth_deadline
        # Asked after every frame: comparisons, no list.
        deadline = self.last_seen + self.limits.heartbeat_interval_s * self.limits.missed_heartbeats
        token = self._token_deadline
        if token is not None and token < deadline:
            deadline = token
        tracked = self.tracker.next_deadline()
        if tracked is not None and tracked < deadline:
            deadline = tracked
        return deadline

    def tick(self, now: float, inbound_waiting: bool = False) -> list[SessionEvent]:
        """Deadlines due at ``now``; ``inbound_waiting``: the device's frames wait unprocessed (see delivery.py)."""
        if self.phase is Phase.CLOSED:
            return []
        if self.phase is Phase.AWAIT_AUTH:
            if self._auth_deadline is not None and now >= self._auth_deadline:
                return self._close(CloseCode.UNAUTHORIZED, "no auth frame in time")
            return []
        if now >= self.heartbeat_deadline():
            return self._close(CloseCode.HEARTBEAT_TIMEOUT, "missed heartbeats")
        if self._token_deadline is not None and now >= self._token_deadline:
            return self._close(CloseCode.TOKEN_EXPIRED, "access token expired; reconnect with a fresh one")
        events: list[SessionEvent] = []
        for ev in self.tracker.due(now, inbound_waiting):
            if isinstance(ev, Resend):
                events.append(Redeliver(ev.pending))
            elif isinstance(ev, GiveUp):
                events.append(DeadLettered(ev.pending))
        return events

    # -------------------------------------------------------------- close

    def _close(self, code: CloseCode, reason: str) -> list[SessionEvent]:
        if self.phase is Phase.CLOSED:
            return []
        self.phase = Phase.CLOSED
        self.close_code = code
        return [Close(code, reason)]

    def close(self, code: CloseCode, reason: str) -> list[SessionEvent]:
        """Close requested from outside (logout, shutdown, slow consumer, replaced device)."""
        return self._close(code, reason)
