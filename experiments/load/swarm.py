"""The asyncio swarm: thousands of wsim devices in one process, each a real WebSocket speaking docs/protocol.md.

Why not the SDK (:mod:`core.sdk.client`) or ``websockets.asyncio``: at 10,000 connections per process a task per
connection and an ``async with`` per frame cost more CPU than the server spends on the same frame, so the swarm
would measure itself. Each connection here is an :class:`asyncio.Protocol` around the sans-I/O
``websockets.client.ClientProtocol`` (the same library, no per-frame coroutine), and every timer (think time,
heartbeats, ack timeouts, gap repair) is a ``call_later`` or one swarm-wide loop.

What a client does is what a real device does, because it is the SDK's protocol code
(:class:`core.sdk.session.ClientSession`): authenticate in the first frame, ``sync`` from its cursors after every
(re)connect, release messages in ``seq`` order exactly once, acknowledge delivery cumulatively, resend
unacknowledged messages with the same ``cmid``; this driver adds read marks, heartbeats and reconnects with
exponential backoff and full jitter (:func:`core.sdk.backoff.full_jitter`). Everything is written to a
:class:`Ledger`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, assert_never

import httpx
import orjson
from hdrh.histogram import HdrHistogram
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

import core.sdk.session as cs
from core.sdk.backoff import full_jitter
from experiments.load.ledger import Ledger, SendRecord, SendState
from experiments.load.spec import ClientFault, DropFault, OfflineFault, StormFault, Workload

log = logging.getLogger(__name__)

T = TypeVar("T")

# Close codes after which a device must not reconnect by itself (docs/protocol.md, "Close codes").
TERMINAL_CLOSE_CODES = frozenset({4001, 4009, 4010, 4011, 4400, 1009})
# Close codes a real device would reconnect after (heartbeat, shutdown, slow consumer, token expiry, rate limit).
HIST_MAX_US = 3_600_000_000
# Ledger status of a history read not made: too many in flight (Workload.history_max_inflight).
HISTORY_SKIPPED = -1


def new_histogram() -> HdrHistogram:
    """Microseconds from 1 us to 1 h with 3 significant digits (HDR: fixed relative error at every scale)."""
    return HdrHistogram(1, HIST_MAX_US, 3)


@dataclass
class Credential:
    """One device of one user, prepared by the coordinator (REST registration happens there)."""

    idx: int
    user_id: str
    username: str
    token: str
    device: str
    directs: list[str] = field(default_factory=list)  # direct conversation ids (friends)
    groups: list[str] = field(default_factory=list)  # group conversation ids


@dataclass
class SwarmCounters:
    connects: int = 0
    connect_failures: int = 0
    closes: dict[int, int] = field(default_factory=dict)
    frames_in: int = 0
    frames_out: int = 0
    pushes: int = 0
    push_duplicates: int = 0
    released: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    pongs: int = 0

    def error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1


def text_for(t_send_ns: int, cmid: str, size: int) -> str:
    """Message text carrying the first-send time, so any receiver computes send->deliver without a join."""
    head = f"{t_send_ns}:{cmid}:"
    return head + "x" * max(0, size - len(head))


def sent_time(text: str) -> int:
    head, _, _ = text.partition(":")
    return int(head) if head.isdigit() else 0


class _WsProtocol(asyncio.Protocol):
    """Bytes <-> sans-I/O websockets client protocol; hands text frames to its :class:`SwarmClient`."""

    __slots__ = ("client", "opened", "transport", "ws")

    def __init__(self, client: SwarmClient, uri: str) -> None:
        self.client = client
        self.ws = ClientProtocol(parse_uri(uri), max_size=None)
        self.transport: asyncio.Transport | None = None
        self.opened = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport is not a subclass
        self.ws.send_request(self.ws.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if isinstance(event, Response):
                if self.ws.handshake_exc is not None:
                    self.client.counters.connect_failures += 1
                    if self.transport is not None:
                        self.transport.abort()
                    return
                self.opened = True
                self.client.on_open(self)
            elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                self.client.on_text(event.data)
        self._flush()

    def eof_received(self) -> bool | None:
        self.ws.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        code = self.ws.close_rcvd.code if self.ws.close_rcvd is not None else 1006
        self.client.on_closed(self, code)

    def send(self, data: bytes) -> None:
        if self.ws.state is State.OPEN and self.transport is not None and not self.transport.is_closing():
            self.ws.send_text(data)
            self._flush()
            self.client.counters.frames_out += 1

    def close(self, code: int = 1000) -> None:
        if self.ws.state is State.OPEN:
            self.ws.send_close(code, "")
            self._flush()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _flush(self) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        for chunk in self.ws.data_to_send():
            if chunk:
                t.write(chunk)
            elif t.can_write_eof():
                t.write_eof()
        if self.ws.close_expected() and self.ws.state is State.CLOSED:
            t.close()


class SwarmClient:
    """One device: drives a :class:`~core.sdk.session.ClientSession` and keeps its connection, its timers and its ledger entries."""

    __slots__ = (
        "ack_queued",
        "attempt",
        "call_timers",
        "connecting",
        "counters",
        "cred",
        "down_since_ns",
        "first_sync",
        "idx",
        "proto",
        "read_counts",
        "sender_timer",
        "seq_no",
        "session",
        "source_addr",
        "swarm",
        "want_online",
    )

    def __init__(self, swarm: Swarm, cred: Credential, source_addr: str | None) -> None:
        self.swarm = swarm
        self.cred = cred
        self.idx = cred.idx
        self.source_addr = source_addr
        self.counters = swarm.counters
        w = swarm.workload
        self.session: cs.ClientSession[SendRecord] = cs.ClientSession(
            cred.device,
            user_id=cred.user_id,
            token=cred.token,
            gap_timeout_s=swarm.gap_timeout_s,
            ack_timeout_s=w.ack_timeout_s,
            max_resends=w.max_resends,
        )
        self.proto: _WsProtocol | None = None
        self.want_online = False
        self.attempt = 0
        self.down_since_ns = 0  # when the connection was lost (0: not reconnecting)
        self.first_sync: asyncio.Future[bool] | None = None
        self.read_counts: dict[str, int] = {}
        self.ack_queued = False  # in the swarm's list of clients owing an ack
        self.seq_no = 0
        self.sender_timer: asyncio.TimerHandle | None = None
        self.call_timers: dict[str, asyncio.TimerHandle] = {}  # REST calls by kind (history, search, ...)
        self.connecting = False

    # ------------------------------------------------------------- life cycle
    def start(self) -> asyncio.Future[bool]:
        """Go online; the future resolves True after the first full sync (False if the server refused us)."""
        self.want_online = True
        self.first_sync = asyncio.get_running_loop().create_future()
        self._open()
        return self.first_sync

    def _open(self) -> None:
        if self.connecting or self.proto is not None or not self.want_online:
            return
        self.connecting = True
        task = asyncio.ensure_future(self._connect())
        self.swarm.tasks.add(task)
        task.add_done_callback(self.swarm.tasks.discard)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        # Nodes of a cluster are tried in turn from the client's home node on: a reconnect after a failure moves
        # on to the next node (failover), as the SDK does.
        uri, (host, port) = self.swarm.targets[(self.idx + self.attempt) % len(self.swarm.targets)]
        try:
            local = (self.source_addr, 0) if self.source_addr else None
            await asyncio.wait_for(
                loop.create_connection(lambda: _WsProtocol(self, uri), host, port, local_addr=local),
                self.swarm.open_timeout_s,
            )
        except (OSError, TimeoutError) as exc:
            self.connecting = False
            self.counters.connect_failures += 1
            self.swarm.ledger.event(self.idx, time.time_ns(), "connect_failed", 0, type(exc).__name__)
            self._schedule_reconnect()
            return
        self.connecting = False

    def on_open(self, proto: _WsProtocol) -> None:
        self.proto = proto
        self.session.connection_opened()
        self.pump()

    def on_closed(self, proto: _WsProtocol, code: int) -> None:
        if self.proto is not proto and self.proto is not None:
            return
        was_open = proto.opened
        self.proto = None
        self.session.connection_lost()
        self.connecting = False
        now = time.time_ns()
        self.counters.closes[code] = self.counters.closes.get(code, 0) + 1
        if was_open:
            self.swarm.ledger.event(self.idx, now, "closed", code)
        else:
            self.counters.connect_failures += 1
            self.swarm.ledger.event(self.idx, now, "connect_failed", code, "handshake")
        if code in TERMINAL_CLOSE_CODES:
            self.want_online = False
            if self.first_sync is not None and not self.first_sync.done():
                self.first_sync.set_result(False)
            return
        if self.want_online:
            if self.down_since_ns == 0:
                self.down_since_ns = now
            self._schedule_reconnect()

    def _schedule_reconnect(self) -> None:
        if not self.want_online:
            return
        w = self.swarm.workload
        delay = full_jitter(self.attempt, w.reconnect_base_s, w.reconnect_cap_s)
        self.attempt += 1
        asyncio.get_running_loop().call_later(delay, self._open)

    def drop(self) -> None:
        """Abort the TCP connection (no close handshake): the fault a dead network path produces."""
        if self.proto is not None:
            self.swarm.ledger.event(self.idx, time.time_ns(), "drop")
            self.proto.abort()

    def go_offline(self) -> None:
        self.want_online = False
        self.swarm.ledger.event(self.idx, time.time_ns(), "offline")
        if self.proto is not None:
            self.proto.close(1000)

    def come_online(self) -> None:
        if self.want_online:
            return
        self.want_online = True
        self.attempt = 0
        self.down_since_ns = time.time_ns()
        self.swarm.ledger.event(self.idx, self.down_since_ns, "online")
        self._open()

    def send_frame(self, frame: dict[str, Any]) -> None:
        if self.proto is not None:
            self.proto.send(orjson.dumps(frame))

    # ------------------------------------------------------------- the session
    def on_text(self, data: bytes | bytearray | memoryview) -> None:
        self.counters.frames_in += 1
        frame = orjson.loads(data)
        if frame.get("type") == "message.new":  # raw arrival, before ordering and de-duplication
            self.counters.pushes += 1
            msg = frame["msg"]
            self.swarm.ledger.arrival(self.idx, msg["conv"], msg["seq"], time.time_ns())
        self.session.receive(frame, time.monotonic())
        self.pump()

    def pump(self) -> None:
        """Act on the session's events, queue an owed ack for the swarm's ack loop, write the session's frames."""
        session = self.session
        events = session.events_received()
        if events:
            for event in events:
                if type(event) is cs.Released:  # the per-push event, without the match below
                    self._released(event.conv, event.items, event.via)
                else:
                    self._on_event(event)
        if session.ack_due and not self.ack_queued:
            self.ack_queued = True
            self.swarm.ack_dirty.append(self)
        frames = session.frames_to_send()
        if frames and self.proto is not None:
            for frame in frames:
                self.proto.send(orjson.dumps(frame))

    def _on_event(self, event: cs.ClientEvent[SendRecord]) -> None:
        match event:
            case cs.Released(conv=conv, items=items, via=via):
                self._released(conv, items, via)
            case cs.SendAcked(out=out, frame=frame):
                rec = out.record
                rec.acked(frame, time.time_ns(), out.attempts)
                self.swarm.ack_hist.record_value(
                    max(1, min(HIST_MAX_US, (rec.t_ack_ns - rec.t_send_ns) // 1000))
                )
                self.swarm.on_acked(self)
            case cs.SendFailed(out=out, frame=frame):
                out.record.failed(frame, out.attempts)
                self.swarm.on_acked(self)
            case cs.SendWritten(out=out):
                out.record.state = SendState.WRITTEN
            case cs.DuplicateDropped(via=via):
                if via == "push":
                    self.counters.push_duplicates += 1
            case cs.ErrorReceived(frame=frame):
                self.counters.error(frame.get("code", ""))
            case cs.Connected(frame=frame):
                self.counters.connects += 1
                self.swarm.server_ack = frame["ack"]
                if self.swarm.heartbeat_s is None:
                    self.swarm.heartbeat_s = float(frame["heartbeat_s"])
            case cs.Synced():
                self._on_synced()
            case cs.FrameReceived(frame=frame):
                if frame.get("type") == "pong":
                    self.counters.pongs += 1
            case _:
                assert_never(event)

    def _on_synced(self) -> None:
        now = time.time_ns()
        self.attempt = 0
        if self.down_since_ns:
            self.swarm.reconnect_hist.record_value(
                max(1, min(HIST_MAX_US, (now - self.down_since_ns) // 1000))
            )
            self.swarm.ledger.event(self.idx, now, "reconnected", 0, str(now - self.down_since_ns))
            self.down_since_ns = 0
        else:
            self.swarm.ledger.event(self.idx, now, "connected")
        if self.first_sync is not None and not self.first_sync.done():
            self.first_sync.set_result(True)

    def _record(self, msg: dict[str, Any], via: str) -> None:
        if msg.get("kind") != "text":
            return
        now = time.time_ns()
        t_sent = sent_time(msg["body"].get("text", ""))
        self.counters.released += 1
        ledger = self.swarm.ledger
        ledger.receive(
            self.idx, self.cred.user_id, msg["conv"], msg["seq"], msg["id"], msg["from"], msg["device"],
            msg["cmid"], now, t_sent, via,
        )  # fmt: skip
        if t_sent:
            hist = self.swarm.deliver_hist if via == "push" else self.swarm.deliver_sync_hist
            hist.record_value(max(1, min(HIST_MAX_US, (now - t_sent) // 1000)))

    def _released(self, conv: str, items: list[dict[str, Any] | None], via: str) -> None:
        for item in items:
            if item is not None:
                self._record(item, via)
        every = self.swarm.workload.read_every
        if every:
            n = self.read_counts.get(conv, 0) + len(items)
            if n >= every:
                n = 0
                cursor = self.session.ordering.cursor(conv)
                if cursor and cursor > 0:
                    self.send_frame({"type": "message.read", "conv": conv, "seq": cursor})
            self.read_counts[conv] = n

    def flush_acks(self) -> None:
        self.ack_queued = False
        self.session.flush_acks()
        self.pump()

    def tick(self, now: float) -> None:
        """The session's timers (gap repair, late acks, retries), from the swarm's maintenance loop."""
        self.session.tick(now)
        self.pump()

    # ------------------------------------------------------------- outbound
    def new_send(self, conv: str, is_group: bool) -> SendRecord:
        self.seq_no += 1
        cmid = f"{self.idx}-{self.seq_no}"
        now = time.time_ns()
        w = self.swarm.workload
        rec = SendRecord(
            client=self.idx,
            user=self.cred.user_id,
            device=self.cred.device,
            cmid=cmid,
            conv=conv,
            is_group=is_group,
            t_send_ns=now,
        )
        rec.sent_twice = w.duplicate_fraction > 0 and random.random() < w.duplicate_fraction
        self.swarm.ledger.sends.append(rec)
        frame = {
            "type": "message.send",
            "cmid": cmid,
            "conv": conv,
            "kind": "text",
            "text": text_for(now, cmid, w.text_bytes),
        }
        self.session.send(cmid, frame, time.monotonic(), rec, twice=rec.sent_twice)
        self.pump()
        return rec

    def settle_attempts(self) -> None:
        """Copy the write counts of sends never acknowledged into their ledger rows (the session counts them)."""
        for out in self.session.outbox.values():
            out.record.attempts = out.attempts


class Swarm:
    """Many :class:`SwarmClient` in one event loop, plus the loops they share (heartbeats, acks, gaps)."""

    def __init__(
        self,
        ws_urls: str | list[str],
        creds: list[Credential],
        source_addrs: list[str],
        workload: Workload | None = None,
        *,
        open_timeout_s: float = 30.0,
        gap_timeout_s: float = 1.0,
        seed: int = 0,
    ) -> None:
        urls = [ws_urls] if isinstance(ws_urls, str) else list(ws_urls)
        self.targets = [(u, (parse_uri(u).host, parse_uri(u).port)) for u in urls]
        self.workload = workload or Workload()
        self.heartbeat_s: float | None = self.workload.heartbeat_s
        self.open_timeout_s = open_timeout_s
        self.gap_timeout_s = gap_timeout_s
        self.counters = SwarmCounters()
        self.ledger = Ledger()
        self.server_ack = "three_state"
        self.ack_hist = new_histogram()
        self.deliver_hist = new_histogram()
        self.deliver_sync_hist = new_histogram()
        self.reconnect_hist = new_histogram()
        self.tasks: set[asyncio.Future[Any]] = set()
        self.ack_dirty: list[SwarmClient] = []
        self.rng = random.Random(seed)
        self.clients = [
            SwarmClient(self, c, source_addrs[i % len(source_addrs)] if source_addrs else None)
            for i, c in enumerate(creds)
        ]
        self._loops: list[asyncio.Task[None]] = []
        self._sending = False
        self._window_waiters: Callable[[SwarmClient], None] | None = None
        self._http: httpx.AsyncClient | None = None
        self._reads: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------- shared loops
    def start_loops(self) -> None:
        if not self._loops:
            self._loops = [
                asyncio.create_task(self._ack_loop()),
                asyncio.create_task(self._maintenance_loop()),
                asyncio.create_task(self._heartbeat_loop()),
            ]

    async def _ack_loop(self) -> None:
        """Cumulative delivery acks, batched every 20 ms (as the SDK does)."""
        while True:
            await asyncio.sleep(0.02)
            dirty, self.ack_dirty = self.ack_dirty, []
            for c in dirty:
                c.flush_acks()

    async def _maintenance_loop(self) -> None:
        """The sessions' timers: gap repair (sync a conversation whose hole stays open), late acks, retries."""
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            for c in self.clients:
                if c.session.synced:
                    c.tick(now)

    async def _heartbeat_loop(self) -> None:
        """Each connected client pings once per heartbeat interval, spread evenly over the interval."""
        i = 0
        while True:
            hb = self.heartbeat_s or 30.0
            step = 0.5
            per_step = max(1, math.ceil(len(self.clients) * step / hb))
            await asyncio.sleep(step)
            ts = int(time.time() * 1000)
            for _ in range(min(per_step, len(self.clients))):
                c = self.clients[i % len(self.clients)]
                i += 1
                if c.session.connected:
                    c.send_frame({"type": "ping", "ts": ts})

    async def stop_loops(self) -> None:
        for t in self._loops:
            t.cancel()
        for t in self._loops:
            try:
                await t
            except asyncio.CancelledError:
                pass
        self._loops = []

    # ------------------------------------------------------------- phases
    async def connect_all(
        self, rate_per_s: float, timeout_s: float = 120.0, limit: int | None = None
    ) -> dict[str, Any]:
        """Open every connection not opened yet, or the next ``limit`` of them (at most ``rate_per_s`` new ones
        per second), and wait for each first sync."""
        self.start_loops()
        t0 = time.monotonic()
        futures: list[asyncio.Future[bool]] = []
        interval = 1.0 / rate_per_s
        todo = [c for c in self.clients if c.first_sync is None]
        for i, c in enumerate(todo[:limit] if limit is not None else todo):
            futures.append(c.start())
            ahead = t0 + (i + 1) * interval - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
        done, _ = await asyncio.wait(futures, timeout=max(1.0, timeout_s - (time.monotonic() - t0)))
        ok = sum(1 for f in done if f.result())
        return {
            "connected": ok,
            "failed": len(futures) - ok,
            "elapsed_s": time.monotonic() - t0,
            "online": self.online_count(),
        }

    def online_count(self) -> int:
        return sum(1 for c in self.clients if c.session.synced)

    def on_acked(self, client: SwarmClient) -> None:
        if self._window_waiters is not None:
            self._window_waiters(client)

    async def run(
        self, start_at_ns: int, faults: list[ClientFault], seed: int = 0, senders: list[int] | None = None
    ) -> dict[str, Any]:
        """Run the workload from ``start_at_ns`` (wall clock, shared by every worker) for its duration, with
        the client-side faults, then drain. ``senders`` (client indexes) overrides ``senders_fraction``."""
        self.start_loops()
        w = self.workload
        loop = asyncio.get_running_loop()
        rng = random.Random(seed)
        delay = max(0.0, (start_at_ns - time.time_ns()) / 1e9)
        await asyncio.sleep(delay)
        t0 = loop.time()
        end = t0 + w.duration_s
        chosen = set(senders) if senders is not None else None
        senders_list = [
            c
            for c in self.clients
            if (c.cred.directs or c.cred.groups)
            and (c.idx in chosen if chosen is not None else rng.random() < w.senders_fraction)
        ]
        handles: list[asyncio.TimerHandle] = []
        for fault in faults:
            handles.extend(self._schedule_fault(fault, t0, rng))
        self._sending = True
        if w.window is not None:
            window = w.window

            def refill(c: SwarmClient) -> None:
                if self._sending and loop.time() < end:
                    while c.session.in_flight < window:
                        self._send_one(c, rng)

            self._window_waiters = refill
            for c in senders_list:
                refill(c)
        elif w.rate_per_user_per_s > 0:
            for c in senders_list:
                self._schedule_next(c, rng, end, first=True)
        if w.history_rate_per_user_per_s > 0:
            for c in self.clients:
                if c.cred.directs or c.cred.groups:
                    self._schedule_calls(c, "history", w.history_rate_per_user_per_s, rng, end, first=True)
        for kind, rate in self._rest_rates().items():
            for c in self.clients:
                self._schedule_calls(c, kind, rate, rng, end, first=True)
        await asyncio.sleep(max(0.0, end - loop.time()))
        self._sending = False
        self._window_waiters = None
        for c in self.clients:
            if c.sender_timer is not None:
                c.sender_timer.cancel()
            for timer in c.call_timers.values():
                timer.cancel()
        # Reads still in flight belong to the run: wait for their answers (each has a timeout).
        if self._reads:
            await asyncio.wait(set(self._reads))
        for h in handles:
            h.cancel()
        for c in self.clients:  # offline users come back for the drain: their messages wait in the store
            if c.first_sync is not None:  # (never-started clients stay away: connect_all(limit=) left them)
                c.come_online()
        drained = await self._drain(w.drain_s)
        return {"drained": drained, "duration_s": loop.time() - t0}

    def _send_one(self, c: SwarmClient, rng: random.Random) -> None:
        w = self.workload
        if c.cred.groups and (not c.cred.directs or rng.random() < w.group_fraction):
            c.new_send(rng.choice(c.cred.groups), True)
        else:
            c.new_send(rng.choice(c.cred.directs), False)

    def _schedule_next(self, c: SwarmClient, rng: random.Random, end: float, first: bool = False) -> None:
        w = self.workload
        loop = asyncio.get_running_loop()
        mean = 1.0 / w.rate_per_user_per_s
        gap = rng.expovariate(1.0 / mean) if w.think == "poisson" else mean
        if first:
            gap = rng.uniform(0, mean)  # spread the first sends over one interval
        if loop.time() + gap >= end:
            return

        def fire() -> None:
            if not self._sending:
                return
            if c.session.in_flight < w.max_inflight:
                self._send_one(c, rng)
            self._schedule_next(c, rng, end)

        c.sender_timer = loop.call_later(gap, fire)

    def _rest_rates(self) -> dict[str, float]:
        w = self.workload
        rates = {
            "search": w.search_rate_per_user_per_s,
            "requests": w.requests_rate_per_user_per_s,
            # asks another client of this worker: one client alone has no one to ask
            "befriend": w.befriend_rate_per_user_per_s if len(self.clients) > 1 else 0.0,
        }
        return {k: r for k, r in rates.items() if r > 0}

    def _schedule_calls(
        self, c: SwarmClient, kind: str, rate: float, rng: random.Random, end: float, first: bool = False
    ) -> None:
        """Poisson REST calls of one kind per client, like :meth:`_schedule_next` for sends; each call is a task
        (an HTTP round trip). A call due while the worker has its cap in flight is recorded as skipped, never
        queued."""
        loop = asyncio.get_running_loop()
        gap = rng.uniform(0, 1.0 / rate) if first else rng.expovariate(rate)
        if loop.time() + gap >= end:
            return

        def fire() -> None:
            if not self._sending:
                return
            call, skip = self._draw_call(c, kind, rng)
            if len(self._reads) >= self.workload.history_max_inflight:
                skip()
            else:
                task = asyncio.ensure_future(call())
                self._reads.add(task)
                task.add_done_callback(self._reads.discard)
            self._schedule_calls(c, kind, rate, rng, end)

        c.call_timers[kind] = loop.call_later(gap, fire)

    def _draw_call(
        self, c: SwarmClient, kind: str, rng: random.Random
    ) -> tuple[Callable[[], Awaitable[None]], Callable[[], None]]:
        """What one call of ``kind`` asks for (its random draws), as (make the call, record it as skipped)."""
        if kind == "history":
            w = self.workload
            conv = rng.choice(c.cred.directs + c.cred.groups)
            before = rng.randint(2, w.history_span + 1) if w.history_span > 0 else None
            return (
                lambda: self._history_read(c, conv, before),
                lambda: self.ledger.history_read(
                    c.idx, conv, before or 0, time.time_ns(), 0, HISTORY_SKIPPED, 0, 0, 0
                ),
            )
        other = rng.choice(self.clients)
        while other is c and len(self.clients) > 1:
            other = rng.choice(self.clients)
        return (
            lambda: self._rest_call(c, kind, other.cred),
            lambda: self.ledger.rest_call(c.idx, kind, time.time_ns(), 0, HISTORY_SKIPPED, 0),
        )

    async def _timed(
        self,
        kind: str,
        request: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]],
        parse: Callable[[httpx.Response], T],
    ) -> tuple[int, int, int, T | None]:
        """One REST call timed from request to parsed answer: (sent at ns, latency us, HTTP status or 0 without an
        answer, ``parse(response)`` of a 2xx answer or None). A transport error is counted here."""
        t_ns = time.time_ns()
        start = time.perf_counter_ns()
        status, parsed = 0, None
        try:
            resp = await request(self._http_client())
            status = resp.status_code
            if 200 <= status < 300:
                parsed = parse(resp)
        except httpx.HTTPError as exc:
            self.counters.error(f"{kind}_{type(exc).__name__}")
        return t_ns, (time.perf_counter_ns() - start) // 1000, status, parsed

    async def _rest_call(self, c: SwarmClient, kind: str, other: Credential) -> None:
        """One account call through the REST API (``Workload.search_rate_per_user_per_s`` ...)."""
        headers = {"Authorization": f"Bearer {c.cred.token}"}

        def request(http: httpx.AsyncClient) -> Awaitable[httpx.Response]:
            if kind == "search":  # a prefix of another user's name: that user and the names that extend it
                return http.get("/api/users/search", params={"q": other.username[:-1]}, headers=headers)
            if kind == "requests":
                return http.get("/api/friends/requests", headers=headers)
            return http.post("/api/friends/requests", json={"user_id": other.user_id}, headers=headers)

        def count(resp: httpx.Response) -> int:
            if resp.status_code == 201:
                return 1
            body = orjson.loads(resp.content)
            return len(body["users"]) if kind == "search" else len(body["incoming"]) + len(body["outgoing"])

        t_ns, latency_us, status, n = await self._timed(kind, request, count)
        if status and n is None and not (kind == "befriend" and status == 409):
            self.counters.error(f"{kind}_{status}")
        self.ledger.rest_call(c.idx, kind, t_ns, latency_us, status, n or 0)

    def _http_client(self) -> httpx.AsyncClient:
        if self._http is None:
            uri = parse_uri(self.targets[0][0])
            scheme = "https" if uri.secure else "http"
            self._http = httpx.AsyncClient(
                base_url=f"{scheme}://{uri.host}:{uri.port}",
                timeout=30.0,
                limits=httpx.Limits(
                    max_connections=self.workload.history_max_inflight,
                    max_keepalive_connections=self.workload.history_max_inflight,
                ),
            )
        return self._http

    async def _history_read(self, c: SwarmClient, conv: str, before: int | None) -> None:
        """One page of older messages through the REST API."""
        params: dict[str, int] = {"limit": self.workload.history_page}
        if before is not None:
            params["before"] = before

        def page(resp: httpx.Response) -> tuple[int, int, int]:
            msgs = orjson.loads(resp.content)["messages"]
            return (len(msgs), int(msgs[0]["ts"]), int(msgs[-1]["ts"])) if msgs else (0, 0, 0)

        t_ns, latency_us, status, got = await self._timed(
            "history",
            lambda http: http.get(
                f"/api/conversations/{conv}/messages",
                params=params,
                headers={"Authorization": f"Bearer {c.cred.token}"},
            ),
            page,
        )
        if status and status != 200:
            self.counters.error(f"history_{status}")
        count, oldest, newest = got if status == 200 and got is not None else (0, 0, 0)
        self.ledger.history_read(c.idx, conv, before or 0, t_ns, latency_us, status, count, oldest, newest)

    def _schedule_fault(self, fault: ClientFault, t0: float, rng: random.Random) -> list[asyncio.TimerHandle]:
        loop = asyncio.get_running_loop()
        handles: list[asyncio.TimerHandle] = []
        if isinstance(fault, (DropFault, StormFault)):
            every = fault.every_s or 0.0
            for k in range(fault.count):
                chosen = [c for c in self.clients if rng.random() < fault.fraction]
                handles.append(loop.call_at(t0 + fault.at_s + k * every, self._drop, chosen))
        elif isinstance(fault, OfflineFault):
            chosen = [c for c in self.clients if rng.random() < fault.fraction]
            handles.append(loop.call_at(t0 + fault.at_s, self._offline, chosen))
            handles.append(loop.call_at(t0 + fault.at_s + fault.for_s, self._online, chosen))
        return handles

    @staticmethod
    def _offline(chosen: list[SwarmClient]) -> None:
        for c in chosen:
            c.go_offline()

    @staticmethod
    def _online(chosen: list[SwarmClient]) -> None:
        for c in chosen:
            c.come_online()

    @staticmethod
    def _drop(chosen: list[SwarmClient]) -> None:
        for c in chosen:
            c.drop()

    async def _drain(self, timeout_s: float) -> bool:
        """Wait until every client is back online and synced, nothing awaits an ack, and receiving has been
        quiet for ``drain_quiet_s`` (or until the timeout). Returns whether it drained."""
        deadline = time.monotonic() + timeout_s
        last = (-1, 0.0)
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            busy = any((c.want_online and not c.session.synced) or c.session.in_flight for c in self.clients)
            n = self.counters.released + self.counters.pushes
            now = time.monotonic()
            if n != last[0]:
                last = (n, now)
            if not busy and now - last[1] >= self.workload.drain_quiet_s:
                return True
        return False

    async def close(self) -> None:
        for c in self.clients:
            c.want_online = False
            if c.proto is not None:
                c.proto.close(1000)
        deadline = time.monotonic() + 5
        # polling: thousands of protocols close independently, there is no single event to wait on
        while any(c.proto is not None for c in self.clients) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        for c in self.clients:
            if c.proto is not None:
                c.proto.abort()
        await self.stop_loops()
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        for c in self.clients:
            c.settle_attempts()
        self.ledger.finish(ack_off=self.server_ack == "off")

    def reset_measurements(self) -> None:
        """A new measurement phase on the same connections: fresh ledger, histograms and counters."""
        self.ledger = Ledger()
        self.ack_hist, self.deliver_hist = new_histogram(), new_histogram()
        self.deliver_sync_hist, self.reconnect_hist = new_histogram(), new_histogram()
        self.counters = SwarmCounters()
        for c in self.clients:
            c.counters = self.counters
            c.session.resends = c.session.gap_syncs = 0

    def histograms(self) -> dict[str, str]:
        """HDR histograms, encoded (mergeable across workers with HdrHistogram.decode + add)."""
        return {
            "send_ack_us": self.ack_hist.encode().decode(),
            "send_deliver_us": self.deliver_hist.encode().decode(),
            "send_deliver_sync_us": self.deliver_sync_hist.encode().decode(),
            "reconnect_us": self.reconnect_hist.encode().decode(),
        }

    def snapshot(self) -> dict[str, Any]:
        c = self.counters
        return {
            "clients": len(self.clients),
            "online": self.online_count(),
            "connects": c.connects,
            "connect_failures": c.connect_failures,
            "closes": {str(k): v for k, v in c.closes.items()},
            "frames_in": c.frames_in,
            "frames_out": c.frames_out,
            "pushes": c.pushes,
            "push_duplicates": c.push_duplicates,
            "released": c.released,
            "resends": sum(cl.session.resends for cl in self.clients),
            "gap_syncs": sum(cl.session.gap_syncs for cl in self.clients),
            "errors": dict(c.errors),
            "sends": len(self.ledger.sends),
            "history_reads": len(self.ledger.history),
            "rest_calls": len(self.ledger.rest),
            "server_ack": self.server_ack,
        }
