"""Locust users that speak the wsim protocol (docs/protocol.md) over ``websocket-client`` (gevent-friendly).

Run by :mod:`experiments.load.locust_driver` as ``locust -f experiments/load/locust_wsim.py --headless ...`` with
``WSIM_LOCUST_PLAN`` naming a JSON plan (credentials, workload, client faults, start time) and
``WSIM_LOCUST_OUT`` the directory for the ledger. Each user: connects and authenticates, syncs from its cursors,
heartbeats, sends 1:1 and group messages with the workload's mix and think time, acknowledges deliveries
cumulatively, sends read marks, resends unacknowledged messages with the same cmid after reconnecting (with
backoff and full jitter), and records everything in the same ledger the asyncio swarm keeps. The protocol is the
SDK's :class:`core.sdk.session.ClientSession`; this module is its gevent driver. Locust keeps its
own statistics too: ``message.send`` (send->ack), ``message.deliver`` (send->deliver), ``connect``.

Locust costs 130-160 ms of its own latency at 10k msg/s on this machine (measured): use it for behaviour with
realistic think time, and the swarm for capacity and latency.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import socket
import time
from pathlib import Path
from typing import Any, assert_never

import gevent
import orjson
import websocket
from locust import User, events, task

import core.sdk.session as cs
from core.sdk.backoff import full_jitter
from experiments.load.ledger import Ledger, SendRecord, SendState
from experiments.load.spec import Workload
from experiments.load.swarm import sent_time, text_for

PLAN: dict[str, Any] = (
    json.loads(Path(os.environ["WSIM_LOCUST_PLAN"]).read_text()) if "WSIM_LOCUST_PLAN" in os.environ else {}
)
WORKLOAD = Workload.model_validate(PLAN.get("workload") or {})
LEDGER = Ledger()
_NEXT = itertools.count()
_STATE: dict[str, Any] = {"server_ack": "three_state"}
_SESSIONS: list[cs.ClientSession[SendRecord]] = []  # of this process's users: their unacked sends at the end


def _think() -> float:
    rate = WORKLOAD.rate_per_user_per_s
    if rate <= 0:
        return 3600.0
    return random.expovariate(rate) if WORKLOAD.think == "poisson" else 1.0 / rate


def _write_ledger(environment: Any, **_: Any) -> None:
    out = os.environ.get("WSIM_LOCUST_OUT")
    if out:
        for session in _SESSIONS:  # the session counts the writes of a send that was never acknowledged
            for pending in session.outbox.values():
                pending.record.attempts = pending.attempts
        LEDGER.finish(ack_off=_STATE["server_ack"] == "off")
        LEDGER.write(Path(out), f"locust{os.getpid()}")


events.quitting.add_listener(_write_ledger)  # type: ignore[no-untyped-call]


class WsimUser(User):
    """One device of one prepared user: drives a :class:`~core.sdk.session.ClientSession` over a ``websocket-client`` socket."""

    def wait_time(self) -> float:
        return _think()

    def on_start(self) -> None:
        creds = PLAN["clients"]
        self.cred = creds[next(_NEXT) % len(creds)]
        self.idx: int = self.cred["idx"]
        self.session: cs.ClientSession[SendRecord] = cs.ClientSession(
            self.cred["device"],
            user_id=self.cred["user_id"],
            token=self.cred["token"],
            ack_timeout_s=WORKLOAD.ack_timeout_s,
            max_resends=WORKLOAD.max_resends,
        )
        _SESSIONS.append(self.session)
        self.ws: websocket.WebSocket | None = None
        self.down_since = 0
        self.seq_no = 0
        self.read_counts: dict[str, int] = {}
        self.stopping = False
        self.attempt = 0
        rng = random.Random(PLAN.get("seed", 0) * 100_003 + self.idx)
        self.fault_times = sorted(
            PLAN["start_ns"] / 1e9 + f["at_s"] + k * (f.get("every_s") or 0)
            for f in PLAN.get("faults", [])
            if f["type"] in ("drop", "storm")
            for k in range(f.get("count", 1))
            if rng.random() < f["fraction"]
        )
        self.sender = gevent.spawn(self._connection_loop)
        gevent.spawn(self._maintenance)

    # ---------------------------------------------------------------- connection
    def _connect(self) -> websocket.WebSocket:
        t = time.perf_counter()
        try:
            ws = websocket.create_connection(
                PLAN["ws_url"], timeout=30, enable_multithread=True, suppress_origin=True
            )
        except Exception as exc:
            self.environment.events.request.fire(
                request_type="WS", name="connect", response_time=(time.perf_counter() - t) * 1000,
                response_length=0, exception=exc, context={},
            )  # fmt: skip
            raise
        self.environment.events.request.fire(
            request_type="WS", name="connect", response_time=(time.perf_counter() - t) * 1000,
            response_length=0, exception=None, context={},
        )  # fmt: skip
        return ws

    def _done(self) -> bool:
        return self.stopping

    def _connection_loop(self) -> None:
        while not self._done():
            try:
                self.ws = self._connect()
                self.attempt = 0
                self.session.connection_opened()
                self._pump()
                while not self._done():
                    raw = self.ws.recv()
                    if not raw:
                        break
                    self._on_frame(orjson.loads(raw))
            except (websocket.WebSocketException, OSError) as exc:
                if not self._done():  # our own close at the end of the test is not a disconnect
                    code = getattr(exc, "status_code", 0) or 1006
                    LEDGER.event(self.idx, time.time_ns(), "closed", code)
            self.ws = None
            self.session.connection_lost()
            if self._done():
                return
            if not self.down_since:
                self.down_since = time.time_ns()
            delay = full_jitter(self.attempt, WORKLOAD.reconnect_base_s, WORKLOAD.reconnect_cap_s)
            self.attempt += 1
            gevent.sleep(delay)

    def _send(self, frame: dict[str, Any]) -> None:
        ws = self.ws
        if ws is not None:
            try:
                ws.send(orjson.dumps(frame).decode())
            except (websocket.WebSocketException, OSError):
                pass

    def _drop(self) -> None:
        """Abort with a TCP reset (SO_LINGER 0), like a dead network path."""
        ws = self.ws
        if ws is None or ws.sock is None:
            return
        LEDGER.event(self.idx, time.time_ns(), "drop")
        try:
            ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            ws.sock.close()
        except OSError:
            pass

    def _maintenance(self) -> None:
        """Every 50 ms: client faults, batched cumulative acks, heartbeats and the session's timers."""
        last_ping = time.monotonic()
        while not self.stopping:
            gevent.sleep(0.05)
            now = time.monotonic()
            if self.fault_times and time.time() >= self.fault_times[0]:
                self.fault_times.pop(0)
                self._drop()
            if not self.session.synced:
                continue
            if self.session.ack_due:
                self.session.flush_acks()
            if now - last_ping > (WORKLOAD.heartbeat_s or 30.0):
                last_ping = now
                self._send({"type": "ping", "ts": int(time.time() * 1000)})
            self.session.tick(now)
            self._pump()

    # ---------------------------------------------------------------- the session
    def _on_frame(self, frame: dict[str, Any]) -> None:
        if frame.get("type") == "message.new":  # raw arrival, before ordering and de-duplication
            msg = frame["msg"]
            LEDGER.arrival(self.idx, msg["conv"], msg["seq"], time.time_ns())
        self.session.receive(frame, time.monotonic())
        self._pump()

    def _pump(self) -> None:
        for event in self.session.events_received():
            self._on_event(event)
        for frame in self.session.frames_to_send():
            self._send(frame)

    def _on_event(self, event: cs.ClientEvent[SendRecord]) -> None:
        match event:
            case cs.Released(conv=conv, items=items, via=via):
                self._released(conv, items, via)
            case cs.SendAcked(out=out, frame=frame):
                rec = out.record
                rec.acked(frame, time.time_ns(), out.attempts)
                self.environment.events.request.fire(
                    request_type="WS", name="message.send", response_time=(rec.t_ack_ns - rec.t_send_ns) / 1e6,
                    response_length=0, exception=None, context={},
                )  # fmt: skip
            case cs.SendFailed(out=out, frame=frame):
                out.record.failed(frame, out.attempts)
                self.environment.events.request.fire(
                    request_type="WS", name="message.send", response_time=0, response_length=0,
                    exception=RuntimeError(frame["code"]), context={},
                )  # fmt: skip
            case cs.SendWritten(out=out):
                out.record.state = SendState.WRITTEN
            case cs.Connected(frame=frame):
                _STATE["server_ack"] = frame["ack"]
            case cs.Synced():
                now = time.time_ns()
                if self.down_since:
                    LEDGER.event(self.idx, now, "reconnected", 0, str(now - self.down_since))
                    self.down_since = 0
                else:
                    LEDGER.event(self.idx, now, "connected")
            case cs.DuplicateDropped() | cs.ErrorReceived() | cs.FrameReceived():
                pass
            case _:
                assert_never(event)

    def _released(self, conv: str, items: list[dict[str, Any] | None], via: str) -> None:
        for msg in items:
            if msg is None or msg.get("kind") != "text":
                continue
            now = time.time_ns()
            t_sent = sent_time(msg["body"].get("text", ""))
            LEDGER.receive(
                self.idx, self.cred["user_id"], conv, msg["seq"], msg["id"], msg["from"], msg["device"],
                msg["cmid"], now, t_sent, via,
            )  # fmt: skip
            if t_sent and via == "push":
                self.environment.events.request.fire(
                    request_type="WS", name="message.deliver", response_time=(now - t_sent) / 1e6,
                    response_length=0, exception=None, context={},
                )  # fmt: skip
        if WORKLOAD.read_every:
            n = self.read_counts.get(conv, 0) + len(items)
            if n >= WORKLOAD.read_every:
                n = 0
                self._send(
                    {"type": "message.read", "conv": conv, "seq": self.session.ordering.cursor(conv) or 0}
                )
            self.read_counts[conv] = n

    # ---------------------------------------------------------------- outbound
    @task
    def send_message(self) -> None:
        if time.time_ns() < PLAN["start_ns"] or self.session.in_flight >= WORKLOAD.max_inflight:
            return
        directs, groups = self.cred["directs"], self.cred["groups"]
        if not directs and not groups:
            return
        is_group = bool(groups) and (not directs or random.random() < WORKLOAD.group_fraction)
        conv = random.choice(groups if is_group else directs)
        self.seq_no += 1
        rec = SendRecord(self.idx, self.cred["user_id"], self.cred["device"], f"{self.idx}-{self.seq_no}", conv,
                         is_group, time.time_ns())  # fmt: skip
        rec.sent_twice = random.random() < WORKLOAD.duplicate_fraction
        LEDGER.sends.append(rec)
        frame = {
            "type": "message.send", "cmid": rec.cmid, "conv": rec.conv, "kind": "text",
            "text": text_for(rec.t_send_ns, rec.cmid, WORKLOAD.text_bytes),
        }  # fmt: skip
        self.session.send(rec.cmid, frame, time.monotonic(), rec, twice=rec.sent_twice)
        self._pump()

    def on_stop(self) -> None:
        """Drain: wait for outstanding acks (up to the workload's drain time), then close."""
        deadline = time.monotonic() + WORKLOAD.drain_s
        while self.session.outbox and time.monotonic() < deadline:
            gevent.sleep(0.1)
        gevent.sleep(WORKLOAD.drain_quiet_s)
        self.stopping = True
        if self.ws is not None:
            try:
                self.ws.close()
            except (websocket.WebSocketException, OSError):
                pass
