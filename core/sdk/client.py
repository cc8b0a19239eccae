"""Async wsim client: REST over httpx, the chat protocol over one WebSocket (the ``websockets`` library).

Reliability on the client side mirrors the server's:
* ``send`` returns when the server acknowledges "sent" (durably stored); unacknowledged messages are resent with
  the same client message id after a reconnect, so a resend can never create a second message;
* reconnects use exponential backoff with full jitter (capped), rotating over the node URLs given (failover);
* after every (re)connect the client syncs from its per-conversation cursors, and it fills any gap in ``seq``
  it notices with a targeted sync: messages are released to the application exactly once and in order.

The protocol itself is :class:`core.sdk.session.ClientSession`; this module is its asyncio driver (socket,
timers, futures, queues) plus the REST calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias, assert_never

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

import core.sdk.session as cs
from core.clock import Clock, SystemClock
from core.errors import TERMINAL_CLOSE_CODES, CloseCode
from core.protocol.ordering import OrderingBuffer
from core.sdk.backoff import full_jitter

log = logging.getLogger(__name__)


class ClientError(Exception):
    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class SendError(ClientError):
    pass


# What a pending send carries for this driver: the future ``send`` waits on (None with the ack policy off).
_Pending: TypeAlias = "asyncio.Future[dict[str, Any]] | None"


@dataclass
class ClientStats:
    session: cs.ClientSession[Any] = field(repr=False, compare=False)
    connects: int = 0
    reconnects: int = 0
    connect_failures: int = 0
    duplicates_dropped: int = 0
    closes: dict[int, int] = field(default_factory=dict)

    @property
    def resends(self) -> int:
        return self.session.resends

    @property
    def gaps_synced(self) -> int:
        return self.session.gap_syncs


def _ws_url(base: str) -> str:
    if base.startswith("https://"):
        return "wss://" + base[len("https://") :].rstrip("/") + "/ws"
    if base.startswith("http://"):
        return "ws://" + base[len("http://") :].rstrip("/") + "/ws"
    return base


class WsimClient:
    def __init__(
        self,
        urls: str | list[str],
        *,
        device: str | None = None,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 30.0,
        gap_timeout_s: float = 1.0,
        auto_ack: bool = True,
        auto_reconnect: bool = True,
        open_timeout_s: float = 10.0,
        origin: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        """``clock``: where the client reads time and arms its resend and ack-flush timers; a test that runs the
        server on a :class:`core.clock.FakeClock` can pass the same one."""
        self.clock: Clock = clock or SystemClock()
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        self._url_index = 0
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.auto_ack = auto_ack
        self.auto_reconnect = auto_reconnect
        self.open_timeout_s = open_timeout_s
        self.origin = origin
        self.http = httpx.AsyncClient(base_url=self.urls[0], timeout=30.0)
        self.user: dict[str, Any] | None = None
        self.access_token: str | None = None
        self.refresh_token: str | None = None
        self.access_expires_ms = 0
        self.node: str | None = None
        self.heartbeat_s = 30.0
        self.session: cs.ClientSession[_Pending] = cs.ClientSession(
            device or f"py-{uuid.uuid4().hex[:12]}", gap_timeout_s=gap_timeout_s
        )
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=100_000)
        self.errors: list[dict[str, Any]] = []
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self.stats = ClientStats(self.session)
        self.connected = asyncio.Event()
        self.synced = asyncio.Event()
        self.closed_for_good = False
        self.last_close: tuple[int, str] | None = None
        self._ws: ClientConnection | None = None
        self._ack_flush_scheduled = False
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_rx = 0.0
        self._tasks: set[asyncio.Future[None]] = set()

    # ================================================================ REST
    @property
    def user_id(self) -> str:
        assert self.user is not None, "log in first"
        return str(self.user["id"])

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"} if self.access_token else {}

    @property
    def device(self) -> str:
        """The device name; the session holds it, since it goes into every ``auth`` frame and decides which
        synced messages are this device's own (the fault campaign logs one device in on two nodes by setting it)."""
        return self.session.device

    @device.setter
    def device(self, name: str) -> None:
        self.session.device = name

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the REST API; raise ClientError with the server's error code on failure."""
        headers = {**self._auth_headers(), **kwargs.pop("headers", {})}
        for attempt in range(len(self.urls)):
            try:
                resp = await self.http.request(method, path, headers=headers, **kwargs)
                break
            except httpx.TransportError:
                if attempt == len(self.urls) - 1:
                    raise
                self._rotate_url()
        if resp.status_code >= 400:
            try:
                err = resp.json()["error"]
                raise ClientError(err["code"], err["message"], resp.status_code)
            except (ValueError, KeyError, TypeError):
                raise ClientError("http", resp.text[:200], resp.status_code) from None
        if resp.status_code == 204 or not resp.content:
            return None
        if resp.headers.get("content-type", "").startswith("application/json"):
            return resp.json()
        return resp.content

    def _rotate_url(self) -> None:
        self._url_index = (self._url_index + 1) % len(self.urls)
        base = self.urls[self._url_index]
        old, self.http = self.http, httpx.AsyncClient(base_url=base, timeout=30.0)
        # close the previous pool (its sockets leaked until garbage collection; seen in the fault campaign)
        task = asyncio.ensure_future(old.aclose())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _take_tokens(self, body: dict[str, Any]) -> dict[str, Any]:
        self.user = body["user"]
        self.access_token = body["access_token"]
        self.refresh_token = body["refresh_token"]
        self.access_expires_ms = body["access_expires"]
        self.session.user_id = str(body["user"]["id"])
        return body

    async def register(self, username: str, password: str, display_name: str | None = None) -> dict[str, Any]:
        body = await self.request(
            "POST",
            "/api/auth/register",
            json={
                "username": username,
                "password": password,
                "display_name": display_name,
                "device": self.device,
            },
        )
        return self._take_tokens(body)

    async def login(self, username: str, password: str) -> dict[str, Any]:
        body = await self.request(
            "POST",
            "/api/auth/login",
            json={"username": username, "password": password, "device": self.device},
        )
        return self._take_tokens(body)

    async def refresh(self) -> None:
        body = await self.request("POST", "/api/auth/refresh", json={"refresh_token": self.refresh_token})
        self._take_tokens(body)

    async def logout(self) -> None:
        await self.request("POST", "/api/auth/logout")

    async def befriend(self, other: WsimClient) -> None:
        """Test/load helper: send a request to ``other`` and accept it from ``other``'s side."""
        req = await self.request("POST", "/api/friends/requests", json={"user_id": other.user_id})
        if req["status"] == "pending":
            await other.request("POST", f"/api/friends/requests/{req['id']}/accept")

    async def create_group(self, name: str, members: list[str]) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "POST", "/api/groups", json={"name": name, "members": members}
        )
        return result

    async def history(
        self,
        conv: str,
        *,
        before: int | None = None,
        after: int | None = None,
        around: int | None = None,
        limit: int = 50,
    ) -> dict[str, Any]:
        """A page of history; ``around``: centred on that seq (open a search result in context)."""
        given = {"before": before, "after": after, "around": around}
        params: dict[str, Any] = {"limit": limit, **{k: v for k, v in given.items() if v is not None}}
        result: dict[str, Any] = await self.request(
            "GET", f"/api/conversations/{conv}/messages", params=params
        )
        return result

    async def search(
        self, q: str, *, conv: str | None = None, before: str | None = None, limit: int = 20
    ) -> dict[str, Any]:
        """Full-text search over what this user may read: ``{"messages": [...], "next": cursor | None}``, newest
        first; pass ``next`` as ``before`` for the next page."""
        params: dict[str, Any] = {"q": q, "limit": limit}
        if conv is not None:
            params["conv"] = conv
        if before is not None:
            params["before"] = before
        result: dict[str, Any] = await self.request("GET", "/api/search/messages", params=params)
        return result

    async def upload(self, data: bytes | Path, filename: str | None = None) -> dict[str, Any]:
        if isinstance(data, Path):
            filename = filename or data.name
            data = await asyncio.to_thread(data.read_bytes)
        result: dict[str, Any] = await self.request(
            "POST", "/api/files", files={"file": (filename or "file", data, "application/octet-stream")}
        )
        return result

    @staticmethod
    def direct_conv(a: str | int, b: str | int) -> str:
        lo, hi = sorted((int(a), int(b)))
        return f"d:{lo}:{hi}"

    # ================================================================ socket lifecycle
    async def connect(self, wait_synced: bool = True, timeout: float = 15.0) -> None:
        """Open the socket (and keep it open: reconnects are automatic until ``close``)."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name=f"wsim-client-{self.device}")
        waiter = self.synced if wait_synced else self.connected
        done, _ = await asyncio.wait(
            [asyncio.ensure_future(waiter.wait()), self._task],
            timeout=timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if self._task in done:
            exc = self._task.exception()
            raise ClientError("connect", f"connection ended: {exc or self.last_close}")
        if not waiter.is_set():
            raise ClientError("connect", f"not connected within {timeout} s (last close {self.last_close})")

    async def close(self) -> None:
        """Go offline for good: unacknowledged sends fail, the HTTP pool closes."""
        await self.disconnect()
        for out in self.session.outbox.values():
            if out.record is not None and not out.record.done():
                out.record.set_exception(SendError("closed", "client closed before the ack"))
        self.session.outbox.clear()
        self.session.unwritten.clear()
        await self.http.aclose()

    async def disconnect(self) -> None:
        """Go offline but keep cursors and unacknowledged sends; ``connect`` resumes from them."""
        self._stopping = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self.connected.clear()
        self.synced.clear()

    async def drop(self) -> None:
        """Abort the TCP connection without a close handshake (fault injection); the client reconnects."""
        ws = self._ws
        if ws is not None and ws.transport is not None:
            ws.transport.abort()

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping:
            ws_url = _ws_url(self.urls[self._url_index])
            try:
                headers = {"Origin": self.origin} if self.origin else None
                async with connect(
                    ws_url,
                    open_timeout=self.open_timeout_s,
                    max_size=None,
                    ping_interval=None,
                    additional_headers=headers,
                    compression=None,
                ) as ws:
                    self._ws = ws
                    attempt = 0
                    await self._session(ws)
            # InvalidHandshake, not only InvalidStatus: a handshake response cut off by the network (InvalidMessage)
            # used to end this loop for good, and the device never came back (found by the fault campaign).
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
                self.stats.connect_failures += 1
                log.debug("connection to %s failed: %r", ws_url, exc)
            finally:
                self._ws = None
                self.connected.clear()
                self.synced.clear()
            if self._stopping or not self.auto_reconnect or self.closed_for_good:
                return
            if len(self.urls) > 1:
                self._url_index = (self._url_index + 1) % len(self.urls)
            self.stats.reconnects += 1
            await asyncio.sleep(full_jitter(attempt, self.backoff_base_s, self.backoff_cap_s))
            attempt += 1

    async def _session(self, ws: ClientConnection) -> None:
        if (
            self.access_token
            and self.access_expires_ms - self.clock.wall_ms() < 30_000
            and self.refresh_token
        ):
            await self.refresh()
        self.session.token = self.access_token
        self.session.connection_opened()
        self._pump()
        maintenance = asyncio.create_task(self._maintain(ws))
        try:
            async for raw in ws:
                self._last_rx = self.clock.monotonic()
                self._on_frame(orjson.loads(raw))
        except ConnectionClosed:
            pass
        finally:
            maintenance.cancel()
            self.session.connection_lost()
            code = ws.close_code if ws.close_code is not None else 1006
            self.last_close = (code, ws.close_reason or "")
            self.stats.closes[code] = self.stats.closes.get(code, 0) + 1
            if code in TERMINAL_CLOSE_CODES:
                self.closed_for_good = code != CloseCode.REPLACED or self._stopping
            if code == CloseCode.TOKEN_EXPIRED and self.refresh_token:
                with contextlib.suppress(Exception):
                    await self.refresh()

    async def _maintain(self, ws: ClientConnection) -> None:
        """Heartbeats, token renewal and the session's timers (gap repair, send retries): every 250 ms, or
        sooner when the session has a deadline."""
        last_ping = self.clock.monotonic()
        while True:
            now = self.clock.monotonic()
            deadline = self.session.next_deadline()
            await asyncio.sleep(0.25 if deadline is None else min(0.25, max(0.0, deadline - now)))
            now = self.clock.monotonic()
            if not self.connected.is_set():
                continue
            if now - last_ping >= self.heartbeat_s:
                last_ping = now
                await self._send(ws, {"type": "ping", "ts": self.clock.wall_ms()})
            if now - self._last_rx > self.heartbeat_s * 2 + 5:
                await ws.close(code=4002, reason="server silent")  # dead link: reconnect
                return
            self.session.tick(now)
            self._pump()
            if (
                self.access_expires_ms
                and self.refresh_token
                and self.access_expires_ms - self.clock.wall_ms() < 60_000
            ):
                try:
                    await self.refresh()
                    await self._send(ws, {"type": "auth.renew", "token": self.access_token})
                except ClientError as exc:
                    log.warning("token refresh failed: %s", exc)

    async def _send(self, ws: ClientConnection, frame: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(orjson.dumps(frame).decode())

    async def _write_all(self, ws: ClientConnection, frames: list[dict[str, Any]]) -> None:
        with contextlib.suppress(ConnectionClosed):
            for frame in frames:
                await ws.send(orjson.dumps(frame).decode())

    # ================================================================ the session's output
    def _pump(self) -> asyncio.Future[None] | None:
        """Write what the session queued (one task, in order) and act on its events; returns the write."""
        for event in self.session.events_received():
            self._on_event(event)
        if self.session.ack_due and self.auto_ack and not self._ack_flush_scheduled:
            self._ack_flush_scheduled = True
            self.clock.call_later(0.02, self._flush_acks)
        frames = self.session.frames_to_send()
        ws = self._ws
        if not frames or ws is None:
            return None
        task = asyncio.ensure_future(self._write_all(ws, frames))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _flush_acks(self) -> None:
        self._ack_flush_scheduled = False
        self.session.flush_acks()
        self._pump()

    def _on_event(self, event: cs.ClientEvent[_Pending]) -> None:
        match event:
            case cs.Released(items=items):
                for item in items:
                    if item is not None:
                        self.messages.put_nowait(item)
            case cs.SendAcked(out=out, frame=frame):
                if out.record is not None and not out.record.done():
                    out.record.set_result(frame)
            case cs.SendFailed(out=out, frame=frame):
                if out.record is not None and not out.record.done():
                    out.record.set_exception(SendError(frame["code"], frame["message"]))
            case cs.SendWritten():
                pass
            case cs.DuplicateDropped():
                self.stats.duplicates_dropped += 1
            case cs.Connected(frame=frame):
                self.node = frame["node"]
                self.heartbeat_s = float(frame["heartbeat_s"])
                self.access_expires_ms = frame["token_expires"]
                self.stats.connects += 1
                self.connected.set()
            case cs.Synced():
                self.synced.set()
            case cs.ErrorReceived(frame=frame, about_send=about_send):
                self.errors.append(frame)
                if not about_send:
                    self._put_event(frame)
            case cs.FrameReceived(frame=frame):
                if frame.get("type") != "pong":
                    self._put_event(frame)
            case _:
                assert_never(event)

    # ================================================================ inbound
    def _on_frame(self, frame: dict[str, Any]) -> None:
        for listener in self.listeners:
            listener(frame)
        self.session.receive(frame, self.clock.monotonic())
        self._pump()

    def _put_event(self, frame: dict[str, Any]) -> None:
        if self.events.full():
            self.events.get_nowait()
        self.events.put_nowait(frame)

    # ================================================================ outbound
    async def send(
        self,
        conv: str,
        text: str | None = None,
        *,
        kind: str = "text",
        file: str | None = None,
        cmid: str | None = None,
        reply_to: int | None = None,
        timeout: float | None = 30.0,
    ) -> dict[str, Any] | None:
        """Send and wait for the "sent" ack (the message is durably stored). With the server's ack policy
        ``off`` there is no ack: returns None once the frame is written (or queued while offline). ``reply_to``: the seq of a message of
        ``conv`` to quote; recipients get it as the message's ``quote`` (docs/protocol.md "Reply / quote")."""
        cmid = cmid or uuid.uuid4().hex
        frame: dict[str, Any] = {"type": "message.send", "cmid": cmid, "conv": conv, "kind": kind}
        if text is not None:
            frame["text"] = text
        if file is not None:
            frame["file"] = file
        if reply_to is not None:
            frame["reply_to"] = reply_to
        if self.session.ack_mode == "off":
            self.session.send(cmid, frame, self.clock.monotonic(), None)
            written = self._pump()
            if written is not None:
                await written
            return None
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.session.send(cmid, frame, self.clock.monotonic(), fut)
        self._pump()
        if timeout is None:
            return await fut
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            raise SendError("timeout", f"no ack for {cmid} within {timeout} s") from None

    async def send_frame(self, frame: dict[str, Any]) -> None:
        """Send a raw frame (tests, fault injection)."""
        if self._ws is None:
            raise ClientError("not_connected", "no socket")
        await self._ws.send(orjson.dumps(frame).decode())

    async def read(self, conv: str, seq: int) -> None:
        await self.send_frame({"type": "message.read", "conv": conv, "seq": seq})

    async def recall(self, msg_id: str) -> None:
        await self.send_frame({"type": "message.recall", "id": msg_id})

    async def typing(self, conv: str) -> None:
        await self.send_frame({"type": "typing", "conv": conv})

    # ================================================================ receiving helpers
    async def next_message(self, timeout: float = 10.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def next_event(
        self, ftype: str, timeout: float = 10.0, where: Callable[[dict[str, Any]], bool] | None = None
    ) -> dict[str, Any]:
        """Wait for the next event frame of ``ftype`` (skipping others) matching ``where``."""
        deadline = self.clock.monotonic() + timeout
        while True:
            remaining = deadline - self.clock.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {ftype} event within {timeout} s")
            ev = await asyncio.wait_for(self.events.get(), remaining)
            if ev.get("type") == ftype and (where is None or where(ev)):
                return ev

    async def iter_messages(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            yield await self.messages.get()

    @property
    def ordering(self) -> OrderingBuffer[dict[str, Any] | None]:
        return self.session.ordering

    @property
    def ack_mode(self) -> str:
        """The server's ack policy, from ``auth.ok``."""
        return self.session.ack_mode

    @property
    def pending_sends(self) -> int:
        return self.session.in_flight
