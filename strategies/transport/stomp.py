"""STOMP 1.2 over WebSocket (subprotocol ``v12.stomp``), mapped onto the same session as the native protocol.

Semantics (docs/protocol.md, "STOMP 1.2 over WebSocket"):
* CONNECT carries the access token (``passcode``, or ``Authorization: Bearer``) and the device id (``login`` or
  ``device``); CONNECTED answers only after the token is verified (it is the ``auth.ok`` frame, as headers).
* SEND to ``/app/<frame type>`` carries a JSON protocol frame as its body; SEND to ``/conv/<conv>`` carries a text
  message. A RECEIPT answers a frame only when it succeeded: for a message that is wsim's *sent* state (stored).
* SUBSCRIBE ``/user/queue/messages`` (everything for this device) and ``/topic/group.<id>`` (one group's frames,
  which then leave the user queue). ``ack: client-individual`` acknowledges single messages, ``client``
  everything up to one message on the subscription, ``auto`` acknowledges on write. Acks move the delivered mark
  cumulatively over what this connection was given (:class:`core.protocol.stomp.AckLedger`); a NACK leaves the
  message unacknowledged, so the retry policy redelivers it and finally dead-letters it.
* Recoverable errors (rate limit, not a member, invalid field) arrive as a MESSAGE with ``wsim-type:error`` on the
  user queue; STOMP ERROR frames are reserved for what ends the connection (bad credentials, malformed STOMP,
  unknown destination, transactions, heartbeat or token expiry), as the STOMP specification requires.
* Frames for which the device has no subscription are not written and not tracked: nothing is lost, the device
  gets messages with ``/app/sync``.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from core.clock import Timer
from core.errors import CloseCode, ErrorCode, WsimError
from core.models import Track
from core.protocol.codec import ERROR_PREFIX, encode_obj
from core.protocol.frames import (
    CLIENT_FRAME_ADAPTER,
    CLIENT_FRAME_TYPES,
    CONV_PATTERN,
    Auth,
    ErrorFrame,
    MessageAck,
)
from core.protocol.stomp import (
    AckLedger,
    HeartBeat,
    StompError,
    StompFrame,
    StompParser,
    negotiate_heart_beat,
    parse_heart_beat,
    serialize_text,
)
from strategies.transport.base import NodePort, Wire
from strategies.transport.config import StompTransportConfig

log = logging.getLogger(__name__)

SUBPROTOCOL = "v12.stomp"
USER_QUEUE = "/user/queue/messages"
GROUP_TOPIC = "/topic/group."
APP_PREFIX = "/app/"
CONV_PREFIX = "/conv/"
ACK_MODES = ("auto", "client", "client-individual")
# Client frame types that may be sent to /app/<type> (auth happens in CONNECT).
APP_TYPES = frozenset(t for t in CLIENT_FRAME_TYPES if t != "auth")

# Internal queue markers (never JSON, so never confused with a protocol frame).
_RECEIPT = "\x00R"
_BEAT = "\x00H"


@dataclass(slots=True)
class Subscription:
    id: str
    destination: str
    ack: str  # auto | client | client-individual


_CONV_RE = re.compile(CONV_PATTERN)


def _is_conv(value: str) -> bool:
    return _CONV_RE.fullmatch(value) is not None


class StompLink(Wire):
    """One STOMP connection: the STOMP framing around the node's device session (``self.link``)."""

    def __init__(self, ws: WebSocket, port: NodePort, config: StompTransportConfig) -> None:
        self.ws = ws
        self.port = port
        self.config = config
        self.link = port.attach(self, "stomp")
        self.parser = StompParser(max_frame_bytes=port.limits.max_frame_bytes)
        self.ledger = AckLedger(port.limits.max_pending_deliveries)
        self.subs: dict[str, Subscription] = {}
        self.user_queue: Subscription | None = None
        self.group_subs: dict[str, Subscription] = {}  # conv -> subscription
        self._ids = itertools.count(1)
        self._connected = False
        self._error_sent = False
        self._handled_ok = False
        self._beat_ms = 0  # server -> client heart-beat period
        self._last_write = port.clock.monotonic()
        self._beat_timer: Timer | None = None

    # ---------------------------------------------------------------- outbound
    def push_receipt(self, receipt_id: str | None) -> None:
        if receipt_id is not None:
            self.link.push(_RECEIPT + receipt_id)

    def keep_on_close(self, frame: str) -> bool:
        return frame.startswith(_RECEIPT)  # DISCONNECT's RECEIPT comes last

    async def _send(self, text: str) -> None:
        try:
            await self.ws.send_text(text)
        except WebSocketDisconnect as exc:
            raise ConnectionError("socket closed") from exc
        self._last_write = self.port.clock.monotonic()

    async def write(self, frame: str, track: Track | None) -> bool:
        if frame.startswith("\x00"):
            if frame.startswith(_RECEIPT):
                await self._send(serialize_text("RECEIPT", {"receipt-id": frame[len(_RECEIPT) :]}))
            elif frame == _BEAT:
                await self._send("\n")
            return False
        if frame.startswith('{"type":"auth.ok"'):
            await self._send_connected(orjson.loads(frame))
            return False
        if frame.startswith('{"type":"pong"'):
            return False  # STOMP heart-beats are EOLs, written on their own timer
        if self.link.closing() and frame.startswith(ERROR_PREFIX):
            err = orjson.loads(frame)
            await self._send_error(str(err.get("message", "error")), frame, err.get("code"))
            return False
        conv, seq, ftype = self._route_keys(frame, track)
        sub = self.group_subs.get(conv) if conv and conv.startswith("g:") else None
        sub = sub or self.user_queue
        if sub is None:
            return False
        n = next(self._ids)
        headers = {
            "subscription": sub.id,
            "message-id": f"m-{n}",
            "destination": sub.destination,
            "content-type": "application/json",
            "wsim-type": ftype,
        }
        if conv is not None:
            headers["wsim-conv"] = conv
        if conv is not None and seq is not None:  # a message.new, first push or redelivery
            headers["wsim-seq"] = str(seq)
            if sub.ack != "auto":
                ack_id = f"a-{n}"
                headers["ack"] = ack_id
                self.ledger.given(ack_id, conv, seq, sub.id if sub.ack == "client" else None)
        await self._send(serialize_text("MESSAGE", headers, frame))
        return True

    @staticmethod
    def _route_keys(frame: str, track: Track | None) -> tuple[str | None, int | None, str]:
        if track is not None:
            return track.conv, track.seq, "message.new"
        obj = orjson.loads(frame)
        msg = obj.get("msg")
        if isinstance(msg, dict):  # message.new without a track: a redelivery (or an untracked push)
            return msg.get("conv"), msg.get("seq"), str(obj.get("type", ""))
        return obj.get("conv"), None, str(obj.get("type", ""))

    async def after_write(self, frame: str, track: Track | None) -> None:
        if track is None:
            return
        sub = self.group_subs.get(track.conv) if track.conv.startswith("g:") else None
        sub = sub or self.user_queue
        if sub is not None and sub.ack == "auto":
            # 'auto': the server assumes the client has the message once it is sent (STOMP 1.2, SUBSCRIBE).
            ack_id = f"auto-{next(self._ids)}"
            self.ledger.given(ack_id, track.conv, track.seq)
            await self._settle(self.ledger.ack(ack_id))

    async def _send_connected(self, ok: dict[str, Any]) -> None:
        headers = {
            "version": "1.2",
            "server": f"wsim/{self.port.node_name}",
            "session": str(ok["device"]),
            "user-name": str(ok["user"]),
            "heart-beat": f"{self._server_beat_ms()},{self._server_beat_ms()}",
            "wsim-ack": str(ok["ack"]),
            "wsim-token-expires": str(ok["token_expires"]),
            "wsim-server-ts": str(ok["server_ts"]),
        }
        await self._send(serialize_text("CONNECTED", headers))

    async def _send_error(self, message: str, body: str = "", code: object = None) -> None:
        if self._error_sent:
            return
        self._error_sent = True
        headers = {"message": message[:200], "version": "1.2", "content-type": "application/json"}
        if code is not None:
            headers["wsim-code"] = str(code)
        await self._send(serialize_text("ERROR", headers, body))

    async def close_wire(self, code: CloseCode, reason: str) -> None:
        if code not in (CloseCode.NORMAL,) and not self._error_sent:
            with_code = encode_obj(
                {"type": "error", "code": "closed", "message": reason, "close_code": int(code)}
            )
            await self._send_error(reason or "connection closed", with_code, int(code))
        await self.ws.close(code=int(code), reason=reason[:120])

    # ---------------------------------------------------------------- heart-beats
    def _server_beat_ms(self) -> int:
        return self.config.heart_beat_ms or int(self.port.limits.heartbeat_interval_s * 1000)

    def _beat(self) -> None:
        self._beat_timer = None
        if self.link.closing() or not self._beat_ms:
            return
        now = self.port.clock.monotonic()
        idle = now - self._last_write
        period = self._beat_ms / 1000
        if idle >= period * 0.9:
            self.link.push(_BEAT)
            idle = 0.0
        self._beat_timer = self.port.clock.call_later(max(0.01, period - idle), self._beat)

    # ---------------------------------------------------------------- inbound
    def handled(self, ok: bool) -> None:
        self._handled_ok = ok

    async def _fatal(self, message: str, code: CloseCode = CloseCode.PROTOCOL_ERROR) -> None:
        self.port.metrics.errors.labels(ErrorCode.BAD_FRAME.value).inc()
        self.link.push(encode_obj({"type": "error", "code": ErrorCode.BAD_FRAME.value, "message": message}))
        await self.link.end(code, message)

    async def on_frame(self, frame: StompFrame) -> None:
        cmd = frame.command
        if not self._connected:
            if cmd in ("CONNECT", "STOMP"):
                await self._on_connect(frame)
            else:
                await self._fatal("the first frame must be CONNECT", CloseCode.UNAUTHORIZED)
            return
        if frame.get("transaction") is not None or cmd in ("BEGIN", "COMMIT", "ABORT"):
            await self._fatal("transactions are not supported")
            return
        match cmd:
            case "SEND":
                await self._on_send(frame)
            case "SUBSCRIBE":
                await self._on_subscribe(frame)
            case "UNSUBSCRIBE":
                await self._on_unsubscribe(frame)
            case "ACK" | "NACK":
                await self._on_ack(frame)
            case "DISCONNECT":
                self.push_receipt(frame.get("receipt"))
                await self.link.end(CloseCode.NORMAL, "client disconnected")
            case _:
                await self._fatal(f"{cmd} is not expected here")

    async def _on_connect(self, frame: StompFrame) -> None:
        versions = (frame.get("accept-version") or "1.0").split(",")
        if "1.2" not in [v.strip() for v in versions]:
            await self._fatal("this server speaks STOMP 1.2 only", CloseCode.UNAUTHORIZED)
            return
        try:
            # Upstream beats are not enforced separately: the session reaps after heartbeat.interval_s x
            # missed_beats of silence, and the server's offer (sy) is that interval.
            _upstream, downstream = negotiate_heart_beat(
                parse_heart_beat(frame.get("heart-beat")), (self._server_beat_ms(), self._server_beat_ms())
            )
        except StompError as exc:
            await self._fatal(str(exc), CloseCode.UNAUTHORIZED)
            return
        token = frame.get("passcode")
        auth = (
            frame.get("Authorization") or frame.get("authorization") or self.ws.headers.get("authorization")
        )
        if not token and auth and auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        device = frame.get("device") or frame.get("login") or self.ws.headers.get("x-wsim-device")
        try:
            auth_frame = CLIENT_FRAME_ADAPTER.validate_python(
                {"type": "auth", "token": token, "device": device}
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            field = "passcode" if first["loc"][-1] == "token" else "login/device"
            await self._fatal(f"CONNECT {field}: {first['msg']}", CloseCode.UNAUTHORIZED)
            return
        assert isinstance(auth_frame, Auth)
        self._connected = True
        self._beat_ms = downstream
        await self.link.feed(auth_frame)
        if self.link.registered and self._beat_ms:
            self._beat()

    async def _on_send(self, frame: StompFrame) -> None:
        dest = frame.get("destination") or ""
        receipt = frame.get("receipt")
        if dest.startswith(APP_PREFIX) and dest[len(APP_PREFIX) :] in APP_TYPES:
            ftype = dest[len(APP_PREFIX) :]
            try:
                obj = orjson.loads(frame.body) if frame.body else {}
            except orjson.JSONDecodeError:
                obj = None
            data: bytes = frame.body
            if isinstance(obj, dict):
                obj["type"] = ftype
                data = orjson.dumps(obj)
        elif dest.startswith(CONV_PREFIX) and _is_conv(dest[len(CONV_PREFIX) :]):
            try:
                text = frame.body.decode()
            except UnicodeDecodeError:
                text = ""
            cmid = frame.get("cmid") or f"stomp-{secrets.token_hex(8)}"
            data = orjson.dumps(
                {
                    "type": "message.send",
                    "cmid": cmid,
                    "conv": dest[len(CONV_PREFIX) :],
                    "kind": "text",
                    "text": text,
                }
            )
        else:
            await self._fatal(
                f"unknown SEND destination {dest[:80]!r} (see /app/<frame type> and /conv/<conv>)"
            )
            return
        self._handled_ok = False
        await self.link.feed_data(data)
        if self._handled_ok:
            self.push_receipt(receipt)

    async def _on_subscribe(self, frame: StompFrame) -> None:
        sub_id = frame.get("id")
        dest = frame.get("destination") or ""
        mode = frame.get("ack") or "auto"
        if not sub_id or sub_id in self.subs:
            await self._fatal("SUBSCRIBE needs a new, unique id")
            return
        if mode not in ACK_MODES:
            await self._fatal(f"ack mode must be one of {', '.join(ACK_MODES)}")
            return
        sub = Subscription(sub_id, dest, mode)
        if dest == USER_QUEUE:
            if self.user_queue is not None:
                await self._fatal(f"already subscribed to {USER_QUEUE}")
                return
            self.user_queue = sub
        elif dest.startswith(GROUP_TOPIC) and _is_conv("g:" + dest[len(GROUP_TOPIC) :]):
            conv = "g:" + dest[len(GROUP_TOPIC) :]
            try:
                await self.port.may_read(self.link.user, conv)
            except WsimError as exc:
                # Refused for this subscription only (issue 14, gap 10): an error on the user queue, ref = the
                # subscription id; the connection and its other subscriptions stay.
                self.link.push_frame(
                    ErrorFrame(code=exc.code.value, message=f"{dest}: {exc.message}", ref=sub_id)
                )
                return
            if conv in self.group_subs:
                await self._fatal(f"already subscribed to {dest}")
                return
            self.group_subs[conv] = sub
        else:
            await self._fatal(f"unknown destination {dest[:80]!r} (see {USER_QUEUE} and {GROUP_TOPIC}<id>)")
            return
        self.subs[sub_id] = sub
        self.push_receipt(frame.get("receipt"))

    async def _on_unsubscribe(self, frame: StompFrame) -> None:
        sub = self.subs.pop(frame.get("id") or "", None)
        if sub is None:
            await self._fatal("UNSUBSCRIBE of an unknown subscription id")
            return
        if sub is self.user_queue:
            self.user_queue = None
        else:
            self.group_subs = {c: s for c, s in self.group_subs.items() if s is not sub}
        self.push_receipt(frame.get("receipt"))

    async def _on_ack(self, frame: StompFrame) -> None:
        ack_id = frame.get("id")
        if not ack_id:
            await self._fatal(f"{frame.command} needs the id of the message's ack header")
            return
        if frame.command == "ACK":
            await self._settle(self.ledger.ack(ack_id))
        else:
            self.ledger.nack(
                ack_id
            )  # stays unacknowledged: redelivered on the retry schedule, then dead-lettered
        # An ACK or NACK shows the client is alive, like any frame.
        self.link.touch()
        self.push_receipt(frame.get("receipt"))

    async def _settle(self, settled: Sequence[tuple[str, int]]) -> None:
        if not settled:
            return
        for conv, seq in settled:
            self.link.settle(conv, seq)
        for conv, mark in self.ledger.marks({c for c, _ in settled}):
            await self.link.feed(MessageAck(type="message.ack", conv=conv, seq=mark))

    # ---------------------------------------------------------------- main loop
    async def run(self) -> None:
        ws = self.ws
        offered = ws.scope.get("subprotocols") or []
        await ws.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
        link = self.link
        link.start()
        try:
            while not link.closing():
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                data: str | bytes | None = message.get("text")
                if data is None:
                    data = message.get("bytes") or b""
                try:
                    events = self.parser.feed(data)
                except StompError as exc:
                    await self._fatal(str(exc))
                    break
                for ev in events:
                    if link.closing():
                        break
                    if isinstance(ev, HeartBeat):
                        if link.registered:
                            link.touch()
                    else:
                        await self.on_frame(ev)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            if self._beat_timer is not None:
                self._beat_timer.cancel()
            await link.cleanup()


class StompTransport:
    """STOMP 1.2 over WebSocket. Weakens the interface in one place: a delivered mark covers what this connection
    was given and acknowledged, so it may pass a message the connection never saw (the device syncs for it)."""

    name = "stomp"

    def __init__(self, config: StompTransportConfig, port: NodePort) -> None:
        self.config = config
        self.port = port

    async def endpoint(self, ws: WebSocket) -> None:
        release = await self.port.admit(ws)
        if release is None:
            return  # refused before accept (403 foreign Origin, 429 too many sockets from the address)
        try:
            await StompLink(ws, self.port, self.config).run()
        finally:
            release()

    def routes(self) -> Sequence[BaseRoute]:
        return [WebSocketRoute(self.config.path, self.endpoint)]

    def describe(self) -> dict[str, object]:
        return {
            "kind": self.name,
            "path": self.config.path,
            "subprotocol": SUBPROTOCOL,
            "destinations": {
                "send": [f"{APP_PREFIX}<frame type>", f"{CONV_PREFIX}<conv>"],
                "subscribe": [USER_QUEUE, f"{GROUP_TOPIC}<group id>"],
            },
        }

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None  # the node closes every registered link when it stops
