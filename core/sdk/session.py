"""The client side of docs/protocol.md for one device, sans-I/O: the one implementation every Python client drives.

Why one class: the SDK, the asyncio swarm, the Locust user and the transport clients each used to rewrite the
handshake, the outbox, the acks and the gap repair, and drifted apart (ack-off sends lost while offline in one,
duplicate pushes never re-acked in another). Its drivers now: the SDK (``core/sdk/client.py``), the swarm
(``experiments/load/swarm.py``), the Locust user (``experiments/load/locust_wsim.py``), one device per transport
(``experiments/transports/clients.py``) and the model devices of ``tests/fuzz/test_protocol_state_machine.py``. Here the protocol is plain code fed with decoded frames and ``now``
(monotonic seconds); it queues frames to write and events for the application. Drivers own the socket, the
timers and their records (a future, a ledger row), and after every call drain :meth:`ClientSession.frames_to_send`
and :meth:`ClientSession.events_received` (the websockets ``ClientProtocol`` pattern).

What it owns:
* the hello (``auth``) and the per-connection state: connected after ``auth.ok``, synced after the first
  complete ``sync.done`` (a ``sync`` from the known cursors follows every ``auth.ok``);
* the outbox: a send keeps its ``cmid`` until ``message.sent``; it is written once the session is synced, written
  again after every reconnect, after an ``unavailable``/``rate_limited`` error (at ``retry_after_ms``) and, with
  ``ack_timeout_s``, when its ack is late (linear: the n-th write is due ``n * ack_timeout_s`` after the first,
  at most ``max_resends`` times). With the server's ack policy ``off`` there is no ack: a send is written once,
  or queued until the session is synced;
* the ordering buffer (:class:`core.protocol.ordering.OrderingBuffer`): messages are released once, in ``seq``
  order; a hole open for ``gap_timeout_s`` is filled by a ``sync`` of that conversation (:meth:`tick`);
* cumulative delivery acks: :attr:`ack_due` says an ack is owed; :meth:`flush_acks` writes one ``message.ack`` per
  conversation whose cursor moved, so a driver batches them on its own timer. A repeated push means the server
  missed our ack: it is acknowledged again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

from core.protocol.ordering import OrderingBuffer

R = TypeVar("R")
Frame: TypeAlias = dict[str, Any]
# Message items released by the ordering buffer: None stands for this device's own message (it advances the
# cursor, there is nothing to show).
Item: TypeAlias = dict[str, Any] | None

RETRYABLE_SEND_ERRORS = frozenset({"unavailable", "rate_limited"})


@dataclass(slots=True, eq=False)
class Outgoing(Generic[R]):
    """One send until its ack; ``record`` is the driver's (a future, a ledger row)."""

    cmid: str
    frame: Frame
    first_at: float
    record: R
    twice: bool = False  # written twice each time (fault injection: the server must deduplicate)
    attempts: int = 1
    retry_at: float | None = None


@dataclass(slots=True)
class Connected:
    """``auth.ok``: the server accepted the device on this connection."""

    frame: Frame


@dataclass(slots=True)
class Synced:
    """The first complete sync after a connect: the device is up to date and its outbox was written again."""


@dataclass(slots=True)
class Released:
    """Messages of ``conv`` to show, in order; ``via`` is "push" or "sync" (how the last of them came)."""

    conv: str
    items: list[Item]
    via: str


@dataclass(slots=True)
class DuplicateDropped:
    conv: str
    seq: int
    via: str


@dataclass(slots=True)
class SendAcked(Generic[R]):
    out: Outgoing[R]
    frame: Frame


@dataclass(slots=True)
class SendWritten(Generic[R]):
    """Ack policy ``off``: the send was written and will never be acknowledged."""

    out: Outgoing[R]


@dataclass(slots=True)
class SendFailed(Generic[R]):
    """The server refused the send for good (``frame`` is the error); it left the outbox."""

    out: Outgoing[R]
    frame: Frame


@dataclass(slots=True)
class ErrorReceived:
    """Every ``error`` frame; ``about_send`` when its ``ref`` names a pending send."""

    frame: Frame
    about_send: bool


@dataclass(slots=True)
class FrameReceived:
    """Any other server frame (receipts, typing, presence, pong, ...): the application's business."""

    frame: Frame


ClientEvent: TypeAlias = (
    Connected
    | Synced
    | Released
    | DuplicateDropped
    | SendAcked[R]
    | SendWritten[R]
    | SendFailed[R]
    | ErrorReceived
    | FrameReceived
)


class ClientSession(Generic[R]):
    """One device across its connections (cursors and outbox survive reconnects)."""

    __slots__ = (
        "_events",
        "_frames",
        "_sync_more",
        "ack_due",
        "ack_mode",
        "ack_timeout_s",
        "auto_ack",
        "connected",
        "device",
        "gap_syncs",
        "max_resends",
        "ordering",
        "outbox",
        "resends",
        "synced",
        "token",
        "unwritten",
        "user_id",
    )

    def __init__(
        self,
        device: str,
        *,
        user_id: str = "",
        token: str | None = None,
        gap_timeout_s: float = 1.0,
        ack_timeout_s: float | None = None,
        max_resends: int = 0,
        auto_ack: bool = True,
    ) -> None:
        self.device = device
        self.user_id = user_id  # tells our own messages in a sync batch (set once logged in)
        self.token = token
        self.ack_timeout_s = ack_timeout_s
        self.max_resends = max_resends
        self.auto_ack = auto_ack
        self.ordering: OrderingBuffer[Item] = OrderingBuffer(gap_timeout_s)
        self.outbox: dict[str, Outgoing[R]] = {}
        self.unwritten: list[Outgoing[R]] = []  # ack policy off: waiting for the session to be synced
        self.ack_mode = "three_state"
        self.connected = False
        self.synced = False
        self.ack_due = False
        self.resends = 0  # writes after the first, of any send
        self.gap_syncs = 0  # conversations synced because a hole stayed open
        self._sync_more = False
        self._frames: list[Frame] = []
        self._events: list[ClientEvent[R]] = []

    # ------------------------------------------------------------------ driver interface
    def frames_to_send(self) -> list[Frame]:
        """Frames to write, in order (then forgotten here). An empty result is the session's own buffer: keep it
        unchanged."""
        frames = self._frames
        if frames:
            self._frames = []
        return frames

    def events_received(self) -> list[ClientEvent[R]]:
        events = self._events
        if events:
            self._events = []
        return events

    @property
    def in_flight(self) -> int:
        """Sends not settled yet: awaiting an ack, or (ack off) waiting to be written."""
        return len(self.outbox) + len(self.unwritten)

    def known_cursors(self) -> dict[str, int]:
        return {c: s for c, s in self.ordering.cursors().items() if s >= 0}

    def connection_opened(self) -> None:
        """A new connection is up: say hello (the first frame must be ``auth``)."""
        self._reset_connection()
        self._frames.append({"type": "auth", "token": self.token, "device": self.device})

    def connection_lost(self) -> None:
        self._reset_connection()

    def _reset_connection(self) -> None:
        self.connected = self.synced = False
        self._sync_more = False

    def send(self, cmid: str, frame: Frame, now: float, record: R, *, twice: bool = False) -> Outgoing[R]:
        """Queue ``frame`` (a ``message.send`` carrying ``cmid``); it is written now if the session is synced."""
        out = Outgoing(cmid, frame, now, record, twice)
        if self.ack_mode == "off":
            if self.synced:
                self._write(out)
                self._events.append(SendWritten(out))
            else:
                self.unwritten.append(out)
            return out
        self.outbox[cmid] = out
        if self.synced:
            self._write(out)
        return out

    def flush_acks(self) -> None:
        """One cumulative ``message.ack`` per conversation whose cursor moved past what was acknowledged."""
        self.ack_due = False
        for conv, cursor in self.ordering.take_unacked():
            self._frames.append({"type": "message.ack", "conv": conv, "seq": cursor})

    def tick(self, now: float) -> None:
        """Timers: sync conversations whose hole stayed open, write sends whose ack or retry time is due."""
        if not self.synced:
            return
        gaps = self.ordering.gaps(now)
        if gaps:
            self.gap_syncs += len(gaps)
            cursors = self.ordering.cursors()
            for conv in gaps:
                self.ordering.mark_syncing(conv, now)
            self._frames.append({"type": "sync", "cursors": {g: cursors[g] for g in gaps if cursors[g] >= 0}})
        if self.outbox:
            timeout = self.ack_timeout_s
            for out in self.outbox.values():
                if out.retry_at is not None:
                    if now >= out.retry_at:
                        out.retry_at = None
                        self._resend(out)
                elif (
                    timeout is not None
                    and out.attempts <= self.max_resends
                    and now - out.first_at > timeout * out.attempts
                ):
                    self._resend(out)

    def next_deadline(self) -> float | None:
        """When :meth:`tick` has work next (None: nothing pending or not synced)."""
        if not self.synced:
            return None
        times = [t for t in (self.ordering.gap_deadline(),) if t is not None]
        timeout = self.ack_timeout_s
        for out in self.outbox.values():
            if out.retry_at is not None:
                times.append(out.retry_at)
            elif timeout is not None and out.attempts <= self.max_resends:
                times.append(out.first_at + timeout * out.attempts)
        return min(times) if times else None

    # ------------------------------------------------------------------ inbound
    def receive(self, frame: Frame, now: float) -> None:
        match frame.get("type"):
            case "message.new":
                self._on_push(frame["msg"], now)
            case "message.sent":
                self._on_sent(frame, now)
            case "sync.batch":
                self._on_sync_batch(frame, now)
            case "sync.done":
                self._on_sync_done(frame)
            case "auth.ok":
                self._on_auth_ok(frame)
            case "error":
                self._on_error(frame, now)
            case "sync.required":
                self._frames.append({"type": "sync", "cursors": self.known_cursors()})
            case _:
                self._events.append(FrameReceived(frame))

    def _on_push(self, msg: Frame, now: float) -> None:
        conv = msg["conv"]
        offer = self.ordering.offer(conv, msg["seq"], msg, now)
        if offer.duplicate:
            self._events.append(DuplicateDropped(conv, msg["seq"], "push"))
            self.ordering.forget_ack(conv)  # the server pushed it again: it missed our ack
            self._ack()
        if offer.needs_sync:
            self._frames.append({"type": "sync", "cursors": {}})
        if offer.ready:
            self._events.append(Released(conv, offer.ready, "push"))
            if self.auto_ack and self.ack_mode != "off":  # _ack() inlined: the per-push path
                self.ack_due = True

    def _on_sent(self, frame: Frame, now: float) -> None:
        out = self.outbox.pop(frame["cmid"], None)
        if out is not None:
            self._events.append(SendAcked(out, frame))
        conv = frame["conv"]
        if self.ordering.cursor(conv) is None:
            self._frames.append({"type": "sync", "cursors": {}})
            return
        ready = self.ordering.offer(conv, frame["seq"], None, now).ready  # our own: advances the cursor
        if ready:
            self._events.append(Released(conv, ready, "push"))
            # Only when it released others' messages waiting behind ours: the server never pushes our own
            # message to this device, so acking it alone would be a frame (and a receipt) for nothing.
            if any(item is not None for item in ready):
                self._ack()

    def _on_sync_batch(self, frame: Frame, now: float) -> None:
        conv = frame["conv"]
        msgs = frame["messages"]
        ordering = self.ordering
        cursor = ordering.cursor(conv)
        if cursor is None or cursor < 0:
            start = msgs[0]["seq"] - 1 if msgs else frame["last_seq"]
            self._release(conv, ordering.set_cursor(conv, start), "push")
        me, device = self.user_id, self.device
        shown: list[Item] = []  # one event per batch, not per message
        for m in msgs:
            mine = m["from"] == me and m["device"] == device
            offer = ordering.offer(conv, m["seq"], None if mine else m, now)
            if offer.duplicate:
                self._events.append(DuplicateDropped(conv, m["seq"], "sync"))
            shown += offer.ready
        self._release(conv, shown, "sync")
        if frame["more"]:
            self._sync_more = True

    def _release(self, conv: str, ready: list[Item], via: str) -> None:
        if ready:
            self._events.append(Released(conv, ready, via))
            if any(item is not None for item in ready):
                self._ack()

    def _on_sync_done(self, frame: Frame) -> None:
        if frame["more"] or self._sync_more:
            self._sync_more = False
            self._frames.append({"type": "sync", "cursors": self.known_cursors()})
            return
        if self.synced:
            return  # a gap repair finished
        self.synced = True
        self._events.append(Synced())
        for out in self.unwritten:
            self._write(out)
            self._events.append(SendWritten(out))
        self.unwritten.clear()
        for out in self.outbox.values():
            self._resend(out)

    def _on_auth_ok(self, frame: Frame) -> None:
        self.connected = True
        self.ack_mode = frame["ack"]
        if self.ack_mode == "off" and self.outbox:  # queued before we knew: no ack will ever come
            self.unwritten.extend(self.outbox.values())
            self.outbox.clear()
        self._events.append(Connected(frame))
        self._frames.append({"type": "sync", "cursors": self.known_cursors()})

    def _on_error(self, frame: Frame, now: float) -> None:
        out = self.outbox.get(frame.get("ref") or "")
        self._events.append(ErrorReceived(frame, out is not None))
        if out is None:
            return
        if frame.get("code") in RETRYABLE_SEND_ERRORS:
            out.retry_at = now + (frame.get("retry_after_ms") or 500) / 1000
            return
        del self.outbox[out.cmid]
        self._events.append(SendFailed(out, frame))

    # ------------------------------------------------------------------ outbound
    def _ack(self) -> None:
        if self.auto_ack and self.ack_mode != "off":
            self.ack_due = True

    def _write(self, out: Outgoing[R]) -> None:
        self._frames.append(out.frame)
        if out.twice:
            self._frames.append(out.frame)

    def _resend(self, out: Outgoing[R]) -> None:
        out.retry_at = None
        out.attempts += 1
        self.resends += 1
        self._write(out)
