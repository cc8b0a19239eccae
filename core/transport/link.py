"""What every transport driver shares: one authenticated device, its session state machine, its outbound queue,
its writer and its timer (a :class:`~core.hub.DeviceLink`).

A transport subclasses :class:`SessionLink` and says only how an encoded JSON frame reaches its device
(``_write``) and how the device is told that the link closes (``_close_wire``); everything a frame means is
decided by :class:`~core.protocol.session.ServerSession` and the services, identically for every transport. This
is why a STOMP, MQTT or polling device gets the same guarantees as a native WebSocket one: the same rate limit,
error budget, heartbeat reaping, token expiry, delivery tracking, retry and dead-lettering.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Coroutine, Mapping
from contextlib import suppress
from typing import Any

from core.clock import Timer
from core.errors import CloseCode, ErrorCode, WsimError
from core.hub import TooManyConnectionsError
from core.models import Principal, Track
from core.node import Node
from core.protocol.codec import ERROR_PREFIX, encode
from core.protocol.frames import (
    Auth,
    AuthOk,
    AuthRenew,
    ClientFrame,
    ErrorFrame,
    MessageAck,
    MessageRead,
    MessageRecall,
    MessageSend,
    Ping,
    Pong,
    ServerFrame,
    Sync,
    SyncBatch,
    SyncDone,
    SyncRequired,
    Typing,
)
from core.protocol.session import (
    Close,
    DeadLettered,
    Handle,
    Redeliver,
    SendFrame,
    ServerSession,
    SessionEvent,
    SessionLimits,
)

log = logging.getLogger(__name__)


def session_limits(node: Node) -> SessionLimits:
    s = node.settings
    return SessionLimits(
        max_frame_bytes=s.limits.max_frame_bytes,
        auth_timeout_s=s.limits.auth_timeout_s,
        heartbeat_interval_s=s.heartbeat.interval_s,
        missed_heartbeats=s.heartbeat.missed_beats,
        rate_per_s=s.limits.rate_per_s,
        rate_burst=s.limits.rate_burst,
        rate_strikes=s.limits.rate_strikes,
        error_budget=s.limits.error_budget,
    )


def frame_ref(frame: ClientFrame) -> str:
    return frame.cmid if isinstance(frame, MessageSend) else frame.type


class Wakeup:
    """Wakes the link's one writer task: ``wait`` returns once ``set`` was called since the last ``wait``.

    An ``asyncio.Event`` does the same for any number of waiters, at the cost of a Python-level loop lookup and
    a waiter deque per wait; the writer waits once per frame under load, where ``Event.wait`` was ~4 % of the
    event loop's samples (py-spy, 1:1 closed loop)."""

    __slots__ = ("_set", "_waiter")

    def __init__(self) -> None:
        self._set = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._set = True
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self) -> None:
        if not self._set:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            await waiter
        self._set = False


class SessionLink(ABC):
    """One device on one transport. Implements DeviceLink; subclasses provide ``_write`` and ``_close_wire``."""

    TRANSPORT = "abstract"

    def __init__(self, node: Node) -> None:
        self.node = node
        now = node.clock.monotonic()
        self.session = ServerSession(
            session_limits(node),
            node.ack.new_tracker(node.retry, node.settings.limits.max_pending_deliveries),
            now,
        )
        self._queue: deque[tuple[str, Track | None, int | None]] = deque()
        self._queue_max = node.settings.limits.outbound_queue_frames
        self._wake = Wakeup()
        self._writer: asyncio.Task[None] | None = None
        self._timer: Timer | None = None
        self._timer_at: float | None = None
        # Inbound frames being processed: while > 0 a due retry waits once more (its ack may be among them).
        self._inbound = 0
        self._close_request: tuple[CloseCode, str] | None = None
        self._closed = asyncio.Event()
        self.principal: Principal | None = None
        self._user = 0
        self._device = ""
        self._family = ""
        self.registered = False
        self._cleaned = False
        self._tasks: set[asyncio.Future[None]] = set()
        self._held: dict[str, int] = {}
        if node.gc_freezer is not None:
            node.gc_freezer.opened()
        self._opened_ms = node.clock.wall_ms()

    # ---------------------------------------------------------------- DeviceLink
    @property
    def user(self) -> int:
        return self._user

    @property
    def device(self) -> str:
        return self._device

    @property
    def family(self) -> str:
        return self._family

    @property
    def transport(self) -> str:
        return self.TRANSPORT

    @property
    def held(self) -> Mapping[str, int]:
        return self._held

    @property
    def opened_ms(self) -> int:
        return self._opened_ms

    def note_held(self, conv: str, seq: int) -> None:
        if seq > self._held.get(conv, 0):
            self._held[conv] = seq

    def closing(self) -> bool:
        return self._close_request is not None

    def push(self, frame: str, track: Track | None = None, ts_ms: int | None = None) -> None:
        if self._close_request is not None:
            return
        if len(self._queue) >= self._queue_max:
            self.close(CloseCode.SLOW_CONSUMER, "outbound queue full; reconnect and sync")
            return
        self._queue.append((frame, track, ts_ms))
        self._wake.set()

    def push_frame(self, frame: ServerFrame) -> None:
        self.push(encode(frame))

    def close(self, code: CloseCode, reason: str) -> None:
        """Close from outside the session (logout, replaced device, slow consumer): queued frames are dropped."""
        self.session.close(code, reason)
        self._begin_close(code, reason, keep_errors=False)

    def _begin_close(self, code: CloseCode, reason: str, *, keep_errors: bool) -> None:
        if self._close_request is not None:
            return
        self._close_request = (code, reason)
        # Error frames queued just before a protocol close stay: they tell the client why.
        kept = [item for item in self._queue if keep_errors and self._keep_on_close(item[0])]
        self._queue.clear()
        self._queue.extend(kept)
        self._wake.set()

    def _keep_on_close(self, frame: str) -> bool:
        """Whether a queued frame is still written when the session closes (the frames that say why)."""
        return frame.startswith(ERROR_PREFIX)

    def request_sync(self, reason: str) -> None:
        self.push_frame(SyncRequired(reason=reason))

    # ---------------------------------------------------------------- the wire (per transport)
    @abstractmethod
    async def _write(self, frame: str, track: Track | None) -> bool:
        """Write one encoded JSON frame to the device; False if it was not written (it is then not tracked)."""

    @abstractmethod
    async def _close_wire(self, code: CloseCode, reason: str) -> None:
        """Tell the device the link is closing, with the close code (or its transport's equivalent)."""

    async def _after_write(self, frame: str, track: Track | None) -> None:
        """Hook after a written frame was tracked (STOMP 'auto' subscriptions acknowledge on write)."""
        return

    def _observe_written(self, frame: str, track: Track | None, ts_ms: int | None) -> None:
        """A frame reached the device (by the transport's own meaning of 'reached'): track it, time it."""
        node = self.node
        node.metrics.frames_out.inc()
        if track is not None:
            self.note_held(track.conv, track.seq)
            self.session.delivered(track.msg_id, track.conv, track.seq, frame, node.clock.monotonic())
            self._reschedule()
        if ts_ms is not None:
            node.metrics.send_deliver_seconds.observe(max(0.0, (node.clock.wall_ms() - ts_ms) / 1000))

    # ---------------------------------------------------------------- writer
    def start_writer(self) -> None:
        self._writer = asyncio.create_task(self._write_loop())

    async def _write_loop(self) -> None:
        try:
            while True:
                await self._wake.wait()
                while self._queue:
                    frame, track, ts_ms = self._queue.popleft()
                    if await self._write(frame, track):
                        self._observe_written(frame, track, ts_ms)
                        await self._after_write(frame, track)
                if self._close_request is not None:
                    code, reason = self._close_request
                    with suppress(Exception):
                        await self._close_wire(code, reason)
                    return
        except (RuntimeError, OSError):  # ConnectionError included: _write raises it when the device is gone
            return  # the reader notices the disconnect and cleans up
        except Exception:
            log.exception("writer of %s/%s failed", self._user, self._device)
        finally:
            self._closed.set()

    # ---------------------------------------------------------------- timer
    def _reschedule(self) -> None:
        """Keep one clock timer at or before the session's next deadline. A timer earlier than needed (the
        deadline moved later, e.g. every pending push was acked) is left to fire and find nothing: cheaper than
        cancelling and re-arming on every ack."""
        deadline = self.session.next_deadline()
        if deadline is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = self._timer_at = None
            return
        if self._timer is not None and self._timer_at is not None and self._timer_at <= deadline:
            return  # an earlier wake-up is already scheduled; tick() will reschedule
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self.node.clock.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        events = self.session.tick(self.node.clock.monotonic(), self._inbound > 0)
        if events:
            self._spawn(self._process(events))
        self._reschedule()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---------------------------------------------------------------- events
    async def feed(self, frame: ClientFrame) -> None:
        """A frame decoded by the transport's own codec: the session's rules, then the services."""
        self._inbound += 1
        try:
            await self._process(self.session.receive_frame(frame, self.node.clock.monotonic()))
        finally:
            self._inbound -= 1

    async def feed_data(self, data: str | bytes) -> None:
        """A JSON protocol frame as text: the session decodes it (size limit, error budget) and acts."""
        self._inbound += 1
        try:
            await self._process(self.session.receive_data(data, self.node.clock.monotonic()))
        finally:
            self._inbound -= 1

    async def _process(self, events: list[SessionEvent]) -> None:
        for ev in events:
            if isinstance(ev, Handle):
                await self._handle(ev.frame)
            elif isinstance(ev, SendFrame):
                if isinstance(ev.frame, ErrorFrame):
                    self.node.metrics.errors.labels(ev.frame.code).inc()
                self.push_frame(ev.frame)
            elif isinstance(ev, Redeliver):
                self.node.metrics.retries.inc()
                self.push(ev.pending.frame)
            elif isinstance(ev, DeadLettered):
                await self.node.messaging.dead_letter(self, ev.pending)
            elif isinstance(ev, Close):
                self._begin_close(ev.code, ev.reason, keep_errors=True)
        self._reschedule()

    async def _handle(self, frame: ClientFrame) -> bool:
        """Run the services for one valid frame; False when it was answered with an error frame."""
        node = self.node
        node.metrics.frames_in.labels(frame.type).inc()
        try:
            match frame:
                case Auth():
                    await self._authenticate(frame.token, frame.device)
                case AuthRenew():
                    await self._renew(frame.token)
                case Ping():
                    self.push_frame(Pong(ts=frame.ts, server_ts=node.clock.wall_ms(), req=frame.req))
                    await node.presence.heartbeat(self)
                case MessageSend():
                    await node.messaging.send(self, frame, node.clock.monotonic())
                case MessageAck():
                    await node.messaging.mark_delivered(self, frame.conv, frame.seq)
                case MessageRead():
                    await node.messaging.mark_read(self, frame.conv, frame.seq)
                case MessageRecall():
                    await node.messaging.recall(self, frame.id)
                case Sync():
                    answered: set[str] = set()
                    by_cursors = True
                    for answer in await node.messaging.sync(self._user, frame):
                        out = answer
                        if isinstance(out, SyncBatch):
                            answered.add(out.conv)
                            self.note_held(out.conv, out.messages[-1]["seq"] if out.more else out.last_seq)
                        elif isinstance(out, SyncDone):
                            by_cursors = out.inbox is None
                            if frame.req is not None:
                                out = out.model_copy(update={"req": frame.req})
                        self.push_frame(out)
                    # A cursor answered with no batch is at the head (one beyond it gets an empty batch): held.
                    for conv, cursor in frame.cursors.items() if by_cursors else ():
                        if conv not in answered:
                            self.note_held(conv, cursor)
                case Typing():
                    await node.messaging.typing(self, frame.conv)
                case _:  # pragma: no cover - the union is closed; mypy checks exhaustiveness below
                    raise AssertionError(f"unhandled frame {frame!r}")
        except WsimError as err:
            node.metrics.errors.labels(err.code.value).inc()
            retry_ms = int(err.details["retry_after_s"] * 1000) if "retry_after_s" in err.details else None
            self.push_frame(
                ErrorFrame(
                    code=err.code.value,
                    message=err.message,
                    ref=frame_ref(frame),
                    retry_after_ms=retry_ms,
                    req=frame.req,
                )
            )
            return False
        except Exception:
            log.exception("error handling %s from user %s", frame.type, self._user)
            node.metrics.errors.labels(ErrorCode.INTERNAL.value).inc()
            self.push_frame(
                ErrorFrame(
                    code=ErrorCode.INTERNAL.value,
                    message="internal error",
                    ref=frame_ref(frame),
                    req=frame.req,
                )
            )
            return False
        return True

    # ---------------------------------------------------------------- authentication
    def _token_deadline(self, exp_ms: int) -> float:
        node = self.node
        return node.clock.monotonic() + (exp_ms - node.clock.wall_ms()) / 1000

    async def _authenticate(self, token: str, device: str | None) -> None:
        try:
            principal = await self.node.accounts.verify_access(token)
        except WsimError as err:
            await self._process(self.session.auth_failed(err.code, err.message))
            return
        await self.open(principal, device)

    async def open(self, principal: Principal, device: str | None) -> bool:
        """Register the verified principal's device with the hub and open the session (answers ``auth.ok``)."""
        node = self.node
        self.principal = principal
        self._user = principal.user_id
        self._family = principal.family
        self._device = device or f"anon-{secrets.token_hex(6)}"
        try:
            old = node.hub.register(self)
        except TooManyConnectionsError as exc:
            self.push_frame(ErrorFrame(code=ErrorCode.RATE_LIMITED.value, message=str(exc), ref="auth"))
            await self._process(self.session.close(CloseCode.TOO_MANY_CONNECTIONS, "too many connections"))
            return False
        self.registered = True
        if old is not None:
            old.close(CloseCode.REPLACED, "the same device connected again")
        self._opened_ms = node.clock.wall_ms()
        self.session.opened(self._token_deadline(principal.exp_ms), node.clock.monotonic())
        node.metrics.connections.labels(self.TRANSPORT).inc()
        node.metrics.connections_opened.labels(self.TRANSPORT).inc()
        self.push_frame(
            AuthOk(
                user=str(principal.user_id),
                device=self._device,
                node=node.name,
                heartbeat_s=node.settings.heartbeat.interval_s,
                ack=node.ack.name,
                server_ts=node.clock.wall_ms(),
                token_expires=principal.exp_ms,
            )
        )
        await node.presence.connected(self)
        self._reschedule()
        return True

    async def _renew(self, token: str) -> None:
        principal = await self.node.accounts.verify_access(token)
        if principal.user_id != self._user:
            raise WsimError(ErrorCode.FORBIDDEN, "the new token belongs to another user")
        self.principal = principal
        self._family = principal.family
        self.session.renewed(self._token_deadline(principal.exp_ms))

    # ---------------------------------------------------------------- end
    async def cleanup(self) -> None:
        """Stop the timer and writer, unregister, and tell presence (idempotent)."""
        node = self.node
        if self._cleaned:
            return
        self._cleaned = True
        if node.gc_freezer is not None:
            node.gc_freezer.closed()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._close_request is None:
            self._close_request = (CloseCode.NORMAL, "")
            self._queue.clear()
        self._wake.set()
        if self._writer is not None:
            try:
                await asyncio.wait_for(self._closed.wait(), timeout=2.0)
            except TimeoutError:
                self._writer.cancel()
            self._writer = None
        code = self.session.close_code or CloseCode.NORMAL
        node.metrics.connections_closed.labels(str(int(code))).inc()
        if not self.registered:
            return
        node.metrics.connections.labels(self.TRANSPORT).dec()
        if node.hub.unregister(self):
            try:
                await node.presence.disconnected(self)
            except Exception:
                log.exception("presence update failed for user %s", self._user)
