"""One device client per transport, with one interface, for the transport tests and the comparison load.

Each client speaks its transport the way a third-party client would (the native JSON socket, STOMP frames on a
``v12.stomp`` WebSocket, HTTP polls with a cursor, signed MQTT publications) and counts what it puts on the wire:
application-layer bytes as written to and read from its TCP sockets (HTTP headers and WebSocket framing
included; TCP/IP headers excluded), and units (frames or requests) in each direction. MQTT bytes are computed
from the MQTT 3.1.1 encoding of each PUBLISH/PUBACK (the socket is paho's); connection set-up is not counted for
any transport.

The protocol itself (what each server frame means, sync, the outbox, ordering, de-duplication, acks) is
:class:`core.sdk.session.ClientSession`, the same code the SDK, the swarm and the Locust user drive; a device is
its driver for one transport (see :class:`Device`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias, assert_never

import httpcore
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

import core.sdk.session as cs
from core.clock import Clock, SystemClock, Timer
from core.protocol import stomp
from core.protocol.mqtt_auth import DownlinkRefusedError, DownlinkVerifier, signed_payload


@dataclass
class WireStats:
    up_units: int = 0  # frames, requests or packets sent by the device
    down_units: int = 0  # frames, responses or packets received
    up_bytes: int = 0
    down_bytes: int = 0
    requests: int = 0  # HTTP requests (polling only)
    empty_responses: int = 0  # HTTP responses without any frame (polling only)

    def add(self, other: WireStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


# ---------------------------------------------------------------------------------------------- byte counting


class _CountingTransport:
    """Wraps an asyncio transport; counts bytes written."""

    def __init__(self, inner: Any, stats: WireStats) -> None:
        self._inner = inner
        self._stats = stats

    def write(self, data: bytes) -> None:
        self._stats.up_bytes += len(data)
        self._inner.write(data)

    def writelines(self, chunks: Any) -> None:
        for c in chunks:
            self.write(c)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def counting_connection(stats: WireStats) -> type[ClientConnection]:
    class CountingConnection(ClientConnection):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(_CountingTransport(transport, stats))  # type: ignore[arg-type]

        def data_received(self, data: bytes) -> None:
            stats.down_bytes += len(data)
            super().data_received(data)

    return CountingConnection


class _CountingStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream, stats: WireStats) -> None:
        self._inner = inner
        self._stats = stats

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = await self._inner.read(max_bytes, timeout)
        self._stats.down_bytes += len(data)
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stats.up_bytes += len(buffer)
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _CountingBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, stats: WireStats, local_address: str | None = None) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._stats = stats
        self._local = local_address

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(
            host, port, timeout, local_address or self._local, socket_options
        )
        return _CountingStream(stream, self._stats)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


# ---------------------------------------------------------------------------------------------- the interface


class DeviceError(Exception):
    def __init__(self, frame: dict[str, Any]) -> None:
        super().__init__(f"{frame.get('code')}: {frame.get('message')}")
        self.frame = frame


@dataclass
class Account:
    user_id: str
    token: str
    device: str = field(default_factory=lambda: f"dev-{uuid.uuid4().hex[:12]}")


# What a pending send carries for these drivers: the future ``send`` waits on.
_Pending: TypeAlias = "asyncio.Future[dict[str, Any]]"


@dataclass
class _SyncQuery:
    """An explicit :meth:`Device.sync` in flight: its ``req`` tells its ``sync.done`` from the session's own."""

    req: str
    done: asyncio.Future[bool]
    batches: list[dict[str, Any]] = field(default_factory=list)


class Device(ABC):
    """A device on one transport, driving :class:`core.sdk.session.ClientSession` for the protocol.

    The session decides what every server frame means, when to sync (after each hello, on a hole, on
    ``sync.required``), the outbox (written once synced, again after a reconnect or a retryable error) and what to
    acknowledge; ``messages`` gets each message once, in ``seq`` order per conversation, with ``_rx_ns`` stamped at
    the arrival of the frame that carried it (so a push held behind a hole still counts from its arrival). Other
    server frames go to ``events``; every ``error`` to ``errors``.

    Each transport keeps its own I/O and maps the session's frames onto its native mechanisms: the hello
    (``auth`` over the socket, STOMP ``CONNECT``, the first poll, a signed MQTT ``auth``) and, for STOMP, the
    acknowledgements (``ACK`` by ack id). Acks are flushed as soon as the session owes one, not batched on a
    timer as the SDK does: the transports experiment has every receiver acknowledge every message at once, as a
    STOMP ``client-individual`` subscriber does.
    """

    kind = "abstract"

    def __init__(
        self,
        base_url: str,
        account: Account,
        *,
        auto_ack: bool = True,
        gap_timeout_s: float = 1.0,
        clock: Clock | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.account = account
        self.auto_ack = auto_ack
        self.clock: Clock = clock or SystemClock()
        self.session: cs.ClientSession[_Pending] = cs.ClientSession(
            account.device,
            user_id=account.user_id,
            token=account.token,
            gap_timeout_s=gap_timeout_s,
            auto_ack=auto_ack,
        )
        self.stats = WireStats()
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.errors: list[dict[str, Any]] = []
        self.auth_ok: dict[str, Any] | None = None
        self.duplicates_dropped = 0
        self._connected = asyncio.Event()
        self._synced = asyncio.Event()
        self._query: _SyncQuery | None = None
        self._cmids = itertools.count(1)
        self._reqs = itertools.count(1)
        self._timer: Timer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------ per transport
    @abstractmethod
    async def _connect(self) -> None:
        """Open the wire (the hello comes from the session, through :meth:`_hello`)."""

    async def _hello(self, frame: dict[str, Any]) -> None:
        """Say the session's ``auth`` frame the transport's way (natively: as it is)."""
        await self._uplink(frame)

    @abstractmethod
    async def _uplink(self, frame: dict[str, Any]) -> None:
        """Send one JSON protocol frame."""

    @abstractmethod
    async def _disconnect(self) -> None:
        """Close the wire."""

    async def ack(self, conv: str, seq: int) -> None:
        """Acknowledge by hand (``auto_ack=False``); the session acknowledges by itself otherwise."""
        await self._uplink({"type": "message.ack", "conv": conv, "seq": seq})

    # ------------------------------------------------------------ life cycle
    async def open(self, timeout: float = 15.0) -> None:
        """Connect and say hello; returns once the session is synced (``auth.ok``, then a complete sync), so what
        the first sync brought is in ``messages`` already (:meth:`discard_messages` drops it)."""
        self._synced.clear()
        await self._connect()
        self.session.connection_opened()
        await self._write(self._pump())
        await asyncio.wait_for(self._synced.wait(), timeout)

    async def close(self) -> None:
        """Go offline; cursors and unacknowledged sends stay in the session, so :meth:`open` resumes from them."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t
        await self._disconnect()
        self._lost()

    def _lost(self) -> None:
        self.session.connection_lost()
        self._connected.clear()
        self._synced.clear()

    # ------------------------------------------------------------ the session
    def _receive(self, frame: dict[str, Any]) -> None:
        """One decoded server frame, as it arrives."""
        ftype = frame.get("type")
        if ftype == "message.new":
            frame["msg"]["_rx_ns"] = time.time_ns()  # arrival: before ordering holds or drops it
        elif ftype == "sync.batch":
            now_ns = time.time_ns()
            for msg in frame["messages"]:
                msg["_rx_ns"] = now_ns
            if self._query is not None:
                self._query.batches.append(frame)
        elif ftype == "sync.done" and self._query is not None and frame.get("req") == self._query.req:
            # The answer to an explicit query ends here; its paging is the query's (from the caller's cursors),
            # so the session does not see this sync.done and follow it up from its own.
            if not self._query.done.done():
                self._query.done.set_result(bool(frame["more"]))
            return
        elif (
            ftype == "error"
            and self._query is not None
            and frame.get("req") == self._query.req
            and not self._query.done.done()
        ):
            # Refused (a rate limit, ...): the query fails at once; the session still hears the error.
            self._query.done.set_exception(DeviceError(frame))
        self.session.receive(frame, self.clock.monotonic())
        self._flush(self._pump())

    def _pump(self) -> list[dict[str, Any]]:
        """Act on the session's events, acknowledge at once, arm its timer; returns the frames to write."""
        session = self.session
        for event in session.events_received():
            self._on_event(event)
        if session.ack_due:
            session.flush_acks()
        self._arm_timer()
        return session.frames_to_send()

    def _on_event(self, event: cs.ClientEvent[_Pending]) -> None:
        match event:
            case cs.Released(conv=conv, items=items):
                self._released(conv, items)
            case cs.SendAcked(out=out, frame=frame):
                if not out.record.done():
                    out.record.set_result(frame)
            case cs.SendFailed(out=out, frame=frame):
                if not out.record.done():
                    out.record.set_exception(DeviceError(frame))
            case cs.SendWritten(out=out):
                if not out.record.done():  # ack policy off: no message.sent will come
                    out.record.set_result({})
            case cs.DuplicateDropped():
                self.duplicates_dropped += 1
            case cs.Connected(frame=frame):
                self.auth_ok = frame
                self._connected.set()
            case cs.Synced():
                self._synced.set()
            case cs.ErrorReceived(frame=frame, about_send=about_send):
                self.errors.append(frame)
                if not about_send:
                    self.events.put_nowait(frame)
            case cs.FrameReceived(frame=frame):
                self.events.put_nowait(frame)
            case _:
                assert_never(event)

    def _released(self, conv: str, items: list[cs.Item]) -> None:
        for item in items:
            if item is not None:  # None: our own message (it moved the cursor)
                self.messages.put_nowait(item)

    def _arm_timer(self) -> None:
        deadline = self.session.next_deadline()
        if deadline is None:
            return
        timer = self._timer
        if timer is not None and not timer.cancelled and timer.when <= deadline:
            return
        if timer is not None:
            timer.cancel()
        self._timer = self.clock.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.session.tick(self.clock.monotonic())
        self._flush(self._pump())

    async def _write(self, frames: list[dict[str, Any]]) -> None:
        for frame in frames:
            if frame["type"] == "auth":
                await self._hello(frame)
            else:
                await self._uplink(frame)

    def _flush(self, frames: list[dict[str, Any]]) -> None:
        """Write from a callback (a frame arrived, a timer fired): in one task, in order."""
        if frames:
            self._spawn(self._write_quietly(frames))

    async def _write_quietly(self, frames: list[dict[str, Any]]) -> None:
        # A closed wire: the reader sees it, and the session resends on reopen.
        with contextlib.suppress(Exception):
            await self._write(frames)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------ the application's calls
    async def send(
        self,
        conv: str,
        text: str,
        cmid: str | None = None,
        timeout: float = 15.0,
        reply_to: int | None = None,
    ) -> dict[str, Any]:
        """Send a text message (quoting seq ``reply_to``); returns the ``message.sent`` frame (it is stored). The
        frame is written from the caller's task, as before the session: no extra hop before the send time.
        With the server's ack policy ``off`` there is no ``message.sent``: returns ``{}`` once written."""
        cmid = cmid or f"{self.account.device}-{next(self._cmids)}"
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        frame: dict[str, Any] = {
            "type": "message.send",
            "cmid": cmid,
            "conv": conv,
            "kind": "text",
            "text": text,
        }
        if reply_to is not None:
            frame["reply_to"] = reply_to
        self.session.send(cmid, frame, self.clock.monotonic(), fut)
        await self._write(self._pump())
        return await asyncio.wait_for(fut, timeout)

    async def read(self, conv: str, seq: int) -> None:
        await self._uplink({"type": "message.read", "conv": conv, "seq": seq})

    async def sync(self, cursors: dict[str, int], timeout: float = 15.0) -> list[dict[str, Any]]:
        """A history query: everything after ``cursors`` (all pages), as the server answers it. The batches go
        through the session too, so a message not seen before is released to ``messages`` (once, in order)."""
        out: list[dict[str, Any]] = []
        cursors = dict(cursors)
        while True:
            query = _SyncQuery(f"q{next(self._reqs)}", asyncio.get_running_loop().create_future())
            self._query = query
            try:
                await self._uplink({"type": "sync", "cursors": cursors, "req": query.req})
                more = await asyncio.wait_for(query.done, timeout)
            finally:
                self._query = None
            for batch in query.batches:
                for msg in batch["messages"]:
                    out.append(msg)
                    cursors[batch["conv"]] = max(cursors.get(batch["conv"], 0), msg["seq"])
            if not more:
                return out

    async def next_message(self, timeout: float = 10.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.messages.get(), timeout)

    def discard_messages(self) -> int:
        """Drop what ``messages`` holds (e.g. the history the first sync released); returns how many."""
        n = 0
        while not self.messages.empty():
            self.messages.get_nowait()
            n += 1
        return n

    async def next_event(
        self, ftype: str, where: Callable[[dict[str, Any]], bool] | None = None, timeout: float = 10.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            ev = await asyncio.wait_for(self.events.get(), max(0.01, deadline - time.monotonic()))
            if ev.get("type") == ftype and (where is None or where(ev)):
                return ev


# ---------------------------------------------------------------------------------------------- native WebSocket


def _ws_base(base_url: str) -> str:
    return "ws" + base_url[len("http") :] if base_url.startswith("http") else base_url


class _WebSocketDevice(Device):
    """A device on one WebSocket connection to ``path``, counted on the wire, read by one task."""

    path = "/ws"
    subprotocols: tuple[Subprotocol, ...] | None = None

    def __init__(self, base_url: str, account: Account, **kw: Any) -> None:
        super().__init__(base_url, account, **kw)
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None

    async def _connect(self) -> None:
        self._ws = await connect(
            _ws_base(self.base_url) + self.path,
            subprotocols=self.subprotocols,
            create_connection=counting_connection(self.stats),
            ping_interval=None,
            max_size=2**20,
        )
        self._reader = asyncio.create_task(self._read())

    @abstractmethod
    async def _read(self) -> None: ...

    async def _goodbye(self) -> None:
        """What the protocol sends before the WebSocket closes (nothing, natively)."""

    async def _disconnect(self) -> None:
        if self._ws is not None:
            await self._goodbye()
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(BaseException):
                await self._reader


class NativeWsDevice(_WebSocketDevice):
    kind = "websocket"

    async def _read(self) -> None:
        assert self._ws is not None
        with contextlib.suppress(Exception):
            async for data in self._ws:
                self.stats.down_units += 1
                self._receive(orjson.loads(data))

    async def _uplink(self, frame: dict[str, Any]) -> None:
        assert self._ws is not None
        self.stats.up_units += 1
        await self._ws.send(orjson.dumps(frame).decode())


# ---------------------------------------------------------------------------------------------- STOMP


class StompDevice(_WebSocketDevice):
    """STOMP 1.2 with this repository's codec; subscribes to the user queue with ``client-individual`` acks.

    Native where STOMP has its own mechanism: the hello is ``CONNECT`` (``CONNECTED`` is the ``auth.ok``, handed
    to the session once the user queue is subscribed, so that the session's sync is answered on it), and an ack
    the session owes for ``conv`` up to ``seq`` is an ``ACK`` frame for each message pushed with an ack id up to
    there. Only messages that came without one (with a sync) are acknowledged the protocol's way, with
    ``/app/message.ack``: the server's ack ledger lets such a cumulative mark pass them."""

    kind = "stomp"
    path = "/stomp"
    subprotocols = (Subprotocol("v12.stomp"),)

    def __init__(
        self, base_url: str, account: Account, *, ack_mode: str = "client-individual", **kw: Any
    ) -> None:
        super().__init__(base_url, account, **kw)
        self.ack_mode = ack_mode
        self._parser = stomp.StompParser(max_frame_bytes=2**20)
        self._ack_ids: dict[tuple[str, int], str] = {}  # (conv, seq) -> the ack id of its latest MESSAGE
        self._plain: set[str] = set()  # convs with a message released without an ack id (from a sync)
        self._receipts: dict[str, asyncio.Future[None]] = {}
        self._receipt_ids = itertools.count(1)
        self._stomp_connected = asyncio.Event()
        self.connected: dict[str, str] | None = None
        self.stomp_errors: list[stomp.StompFrame] = []

    async def _connect(self) -> None:
        self._parser = stomp.StompParser(max_frame_bytes=2**20)
        self._ack_ids.clear()  # ack ids belong to a connection
        self._plain.clear()
        self._stomp_connected.clear()
        self.connected = None
        await super()._connect()

    async def _hello(self, frame: dict[str, Any]) -> None:
        await self._frame(
            "CONNECT",
            {
                "accept-version": "1.2",
                "host": "wsim",
                "login": str(frame["device"]),
                "passcode": str(frame["token"]),
                "heart-beat": "10000,10000",
            },
        )
        await asyncio.wait_for(self._stomp_connected.wait(), 15)
        await self.request_receipt(
            "SUBSCRIBE", {"id": "q", "destination": "/user/queue/messages", "ack": self.ack_mode}
        )
        h = self.connected or {}
        self._receive(
            {
                "type": "auth.ok",
                "user": h.get("user-name"),
                "device": h.get("session"),
                "ack": h.get("wsim-ack", "three_state"),
            }
        )

    async def _frame(self, command: str, headers: dict[str, str], body: bytes | str = b"") -> None:
        assert self._ws is not None
        self.stats.up_units += 1
        await self._ws.send(
            stomp.serialize_text(command, headers, body if isinstance(body, str) else body.decode())
        )

    async def request_receipt(self, command: str, headers: dict[str, str], body: bytes | str = b"") -> None:
        rid = f"r{next(self._receipt_ids)}"
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._receipts[rid] = fut
        await self._frame(command, {**headers, "receipt": rid}, body)
        await asyncio.wait_for(fut, 15)

    async def _read(self) -> None:
        assert self._ws is not None
        with contextlib.suppress(Exception):
            async for data in self._ws:
                for ev in self._parser.feed(data):
                    if isinstance(ev, stomp.HeartBeat):
                        continue
                    self.stats.down_units += 1
                    self._on_stomp(ev)

    def _on_stomp(self, f: stomp.StompFrame) -> None:
        if f.command == "CONNECTED":
            self.connected = f.headers
            self._stomp_connected.set()
        elif f.command == "RECEIPT":
            fut = self._receipts.pop(f.headers.get("receipt-id", ""), None)
            if fut is not None and not fut.done():
                fut.set_result(None)
        elif f.command == "ERROR":
            self.stomp_errors.append(f)
            for fut in self._receipts.values():
                if not fut.done():
                    fut.set_exception(
                        DeviceError({"code": f.headers.get("wsim-code"), "message": f.headers.get("message")})
                    )
        elif f.command == "MESSAGE":
            frame = orjson.loads(f.body)
            ack_id = f.headers.get("ack")
            if ack_id is not None and frame.get("type") == "message.new":
                msg = frame["msg"]
                self._ack_ids[(msg["conv"], msg["seq"])] = ack_id
            self._receive(frame)

    def _released(self, conv: str, items: list[cs.Item]) -> None:
        for item in items:
            if item is not None and (conv, item["seq"]) not in self._ack_ids:
                self._plain.add(conv)
        super()._released(conv, items)

    async def _ack_upto(self, conv: str, seq: int) -> None:
        """The session's cumulative ack, the STOMP way."""
        ids = sorted((s, a) for (c, s), a in self._ack_ids.items() if c == conv and s <= seq)
        for s, ack_id in ids:
            del self._ack_ids[(conv, s)]
            await self._frame("ACK", {"id": ack_id})
        if conv in self._plain:
            self._plain.discard(conv)
            await self._uplink({"type": "message.ack", "conv": conv, "seq": seq})

    async def ack(self, conv: str, seq: int) -> None:
        ack_id = self._ack_ids.pop((conv, seq), None)
        if ack_id is None:  # a message that came with sync: acknowledge it the protocol's way
            await super().ack(conv, seq)
            return
        await self._frame("ACK", {"id": ack_id})

    async def nack(self, conv: str, seq: int) -> None:
        ack_id = self._ack_ids.pop((conv, seq), None)
        if ack_id is not None:
            await self._frame("NACK", {"id": ack_id})

    async def _write(self, frames: list[dict[str, Any]]) -> None:
        for frame in frames:
            match frame["type"]:
                case "auth":
                    await self._hello(frame)
                case "message.ack":
                    await self._ack_upto(frame["conv"], frame["seq"])
                case _:
                    await self._uplink(frame)

    async def _uplink(self, frame: dict[str, Any]) -> None:
        body = {k: v for k, v in frame.items() if k != "type"}
        await self._frame(
            "SEND",
            {"destination": f"/app/{frame['type']}", "content-type": "application/json"},
            orjson.dumps(body),
        )

    async def _goodbye(self) -> None:
        with contextlib.suppress(Exception):
            await self.request_receipt("DISCONNECT", {})


# ---------------------------------------------------------------------------------------------- HTTP polling


class PollDevice(Device):
    """Long polling (``interval_s`` None: a poll is always outstanding) or short polling (one every
    ``interval_s``). The hello is the first request (no link); uplinks go at once in their own request
    (``wait: false``); both kinds of responses carry frames, numbered by the cursor, so duplicates between them
    are dropped here, before the session. A response with a new link is a new connection for the session (it
    syncs, and resends what is unacknowledged)."""

    def __init__(
        self,
        base_url: str,
        account: Account,
        *,
        path: str,
        interval_s: float | None,
        local_address: str | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(base_url, account, **kw)
        self.kind = "long_poll" if interval_s is None else "short_poll"
        self.path = path
        self.interval_s = interval_s
        self._local_address = local_address
        self._pool = self._new_pool()
        self._pool_closed = False
        self.link: str | None = None
        self.cursor = 0
        self.links_seen = 0
        self.closed: dict[str, Any] | None = None
        self._out: list[dict[str, Any]] = []
        self._flushing = False
        self._poller: asyncio.Task[None] | None = None
        self._stopping = False

    def _new_pool(self) -> httpcore.AsyncConnectionPool:
        return httpcore.AsyncConnectionPool(
            network_backend=_CountingBackend(self.stats, self._local_address), max_connections=4
        )

    async def _request(self, frames: list[dict[str, Any]], wait: bool, close: bool = False) -> None:
        body = {"device": self.account.device, "link": self.link, "cursor": self.cursor, "frames": frames}
        body["wait"] = wait
        if close:
            body["close"] = True
        self.stats.requests += 1
        self.stats.up_units += 1
        resp = await self._pool.request(
            "POST",
            self.base_url + self.path,
            headers={"Authorization": f"Bearer {self.account.token}", "Content-Type": "application/json"},
            content=orjson.dumps(body),
            extensions={"timeout": {"connect": 10, "read": 60, "write": 10, "pool": 60}},
        )
        self.stats.down_units += 1
        if resp.status != 200:
            raise DeviceError(orjson.loads(resp.content).get("error", {"code": str(resp.status)}))
        out = orjson.loads(resp.content)
        self._on_response(out)

    def _on_response(self, out: dict[str, Any]) -> None:
        frames = out["frames"]
        if not frames:
            self.stats.empty_responses += 1
        if out["link"] != self.link:
            if frames and frames[0].get("type") == "auth.ok" and out["cursor"] == len(frames):
                self.link = out["link"]  # a new link: numbering restarts, and the session starts over on it
                self.cursor = 0
                self.links_seen += 1
                self._lost()
            else:
                return  # a response of a link that has been replaced meanwhile
        first = out["cursor"] - len(frames) + 1
        for i, frame in enumerate(frames):
            if first + i > self.cursor:
                self.cursor = first + i
                self._receive(frame)
        if out.get("closed"):
            self.closed = out["closed"]

    async def _connect(self) -> None:
        self._stopping = False
        if self._pool_closed:
            self._pool = self._new_pool()
            self._pool_closed = False

    async def _hello(self, frame: dict[str, Any]) -> None:
        """The first request, without a link: its answer starts with ``auth.ok`` (the token is the header)."""
        await self._request([], wait=False)
        await asyncio.wait_for(self._connected.wait(), 15)
        self._poller = asyncio.create_task(self._poll_loop())

    def stopping(self) -> bool:
        return self._stopping

    async def _poll_loop(self) -> None:
        while not self.stopping():
            try:
                if self.interval_s is not None:
                    await asyncio.sleep(self.interval_s)
                await self._request([], wait=self.interval_s is None)
            except asyncio.CancelledError:
                raise
            except Exception:
                if self.stopping():
                    return
                await asyncio.sleep(0.5)  # the cursor makes a lost response harmless: just ask again

    async def _uplink(self, frame: dict[str, Any]) -> None:
        self._out.append(frame)
        if not self._flushing:
            self._flushing = True
            try:
                while self._out:
                    batch, self._out = self._out, []
                    await self._request(batch, wait=False)
            finally:
                self._flushing = False

    async def _disconnect(self) -> None:
        self._stopping = True
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(BaseException):
                await self._poller
            self._poller = None
        if not self._pool_closed:
            with contextlib.suppress(Exception):
                await self._request([], wait=False, close=True)
            await self._pool.aclose()
            self._pool_closed = True
        self._out = []
        self._flushing = False
        self.link = None
        self.cursor = 0


# ---------------------------------------------------------------------------------------------- MQTT


def _remaining_length_bytes(n: int) -> int:
    return 1 if n < 128 else 2 if n < 16384 else 3 if n < 2097152 else 4


def mqtt_publish_bytes(topic: str, payload: bytes, qos: int = 1) -> int:
    """Bytes of one MQTT 3.1.1 PUBLISH packet."""
    remaining = 2 + len(topic.encode()) + (2 if qos else 0) + len(payload)
    return 1 + _remaining_length_bytes(remaining) + remaining


PUBACK_BYTES = 4


class MqttDevice(Device):
    """A device on the broker: credentials over HTTP, uplinks signed and published QoS 1, downlink subscribed
    QoS 1 (the broker's PUBACKs are MQTT's own delivery; the protocol's acks ride on top, as uplinks). The hello
    is a signed ``{"type": "auth"}``: the signature says who, the token never crosses the broker."""

    kind = "mqtt"

    def __init__(
        self,
        base_url: str,
        account: Account,
        *,
        credentials_path: str = "/api/transports/mqtt/credentials",
        **kw: Any,
    ) -> None:
        super().__init__(base_url, account, **kw)
        self.credentials_path = credentials_path
        self.creds: dict[str, Any] | None = None
        self._client: Any = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._reader: asyncio.Task[None] | None = None
        self.verifier: DownlinkVerifier | None = None
        self.refused_downlinks = 0

    async def fetch_credentials(self) -> dict[str, Any]:
        import httpx

        async with httpx.AsyncClient(base_url=self.base_url) as http:
            r = await http.post(
                self.credentials_path,
                json={"device": self.account.device},
                headers={"Authorization": f"Bearer {self.account.token}"},
            )
        if r.status_code != 200:
            raise DeviceError(r.json()["error"])
        creds: dict[str, Any] = r.json()
        self.creds = creds
        v = self.verifier
        if v is None or v.topic != creds["downlink"]:  # a refresh in the same login keeps the last n
            self.verifier = DownlinkVerifier(creds["key"], creds["downlink"], creds["down_floor"])
        return creds

    async def _connect(self) -> None:
        import aiomqtt

        creds = self.creds or await self.fetch_credentials()
        self._stack = contextlib.AsyncExitStack()
        self._client = await self._stack.enter_async_context(
            aiomqtt.Client(
                creds["broker"]["host"],
                creds["broker"]["port"],
                identifier=f"wsim-dev-{uuid.uuid4().hex[:16]}",
                username=creds.get("username"),
                password=creds.get("password"),
                clean_session=True,
                socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),  # as the bridge (see there)
            )
        )
        await self._client.subscribe(creds["downlink"], qos=1)
        self._reader = asyncio.create_task(self._read())

    async def _hello(self, frame: dict[str, Any]) -> None:
        await self._uplink({"type": "auth"})  # (re)attach; no token on the broker

    async def _read(self) -> None:
        assert self.creds is not None and self.verifier is not None
        down = self.creds["downlink"]
        with contextlib.suppress(Exception):
            async for message in self._client.messages:
                payload = bytes(message.payload)
                self.stats.down_units += 1
                self.stats.down_bytes += mqtt_publish_bytes(down, payload)
                self.stats.up_bytes += PUBACK_BYTES
                try:  # only what the bridge signed, newer than anything before: no injected or replayed frame
                    frame = orjson.loads(self.verifier.verify(payload))
                except DownlinkRefusedError:
                    self.refused_downlinks += 1
                    continue
                if frame.get("type") == "closed":  # the bridge's close notice: the link is gone
                    self._lost()
                    self.events.put_nowait(frame)
                    continue
                self._receive(frame)

    async def _uplink(self, frame: dict[str, Any]) -> None:
        assert self.creds is not None
        topic = self.creds["uplink"]
        payload = signed_payload(self.creds["key"], topic, time.time_ns() // 1_000_000, orjson.dumps(frame))
        self.stats.up_units += 1
        self.stats.up_bytes += mqtt_publish_bytes(topic, payload)
        self.stats.down_bytes += PUBACK_BYTES
        await self._client.publish(topic, payload, qos=1)

    async def _disconnect(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        if self._stack is not None:
            with contextlib.suppress(Exception):
                await self._stack.aclose()


# ---------------------------------------------------------------------------------------------- factory

TRANSPORT_KINDS = ("websocket", "stomp", "long_poll", "short_poll", "mqtt")


def server_transports(topic_prefix: str) -> list[dict[str, Any]]:
    """The ``strategies.transports`` setting that enables every transport (MQTT under ``topic_prefix``)."""
    return [
        {"kind": "websocket"},
        {"kind": "stomp"},
        {"kind": "long_poll"},
        {"kind": "short_poll"},
        {"kind": "mqtt", "topic_prefix": topic_prefix},
    ]


_FACTORIES: dict[str, Callable[..., Device]] = {
    "websocket": lambda url, account, short_interval_s, **kw: NativeWsDevice(url, account, **kw),
    "stomp": lambda url, account, short_interval_s, **kw: StompDevice(url, account, **kw),
    "long_poll": lambda url, account, short_interval_s, **kw: PollDevice(
        url, account, path="/api/poll/long", interval_s=None, **kw
    ),
    "short_poll": lambda url, account, short_interval_s, **kw: PollDevice(
        url, account, path="/api/poll/short", interval_s=short_interval_s, **kw
    ),
    "mqtt": lambda url, account, short_interval_s, **kw: MqttDevice(url, account, **kw),
}


def make_device(
    kind: str, base_url: str, account: Account, *, short_interval_s: float = 0.2, **kw: Any
) -> Device:
    try:
        factory = _FACTORIES[kind]
    except KeyError:
        raise ValueError(f"unknown transport {kind!r}; known: {', '.join(TRANSPORT_KINDS)}") from None
    return factory(base_url, account, short_interval_s, **kw)
