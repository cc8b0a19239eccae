"""Clients nobody here wrote: stomp.py over its WebSocket transport, and the mosquitto command-line tools (with
openssl computing the uplink signature, as docs/transports.md tells a shell user to). Also the MQTT bridge's
refusals: forged, tampered, replayed and logged-out uplinks post nothing."""

from __future__ import annotations

import asyncio
import base64
import os
import queue
import shlex
import shutil
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from core.protocol.mqtt_auth import DownlinkRefusedError, DownlinkVerifier
from core.sdk import WsimClient
from experiments.transports.clients import Account, Device, make_device, server_transports
from tests.conftest import ServerFactory
from tests.support.helpers import friend_pair, mqtt_credentials
from tests.support.server import RunningServer
from tests.support.services import namespace, require_service, unavailable


@pytest.fixture
async def srv(start_server: ServerFactory) -> RunningServer:
    require_service("mosquitto")
    # stomp.py (websocket-client) always sends "Origin: http://<host>:<port>", a port known only after start.
    return await start_server(
        {"server": {"origins": ["*"]}, "strategies": {"transports": server_transports(namespace("wsimt"))}}
    )


@pytest.fixture
async def pair(srv: RunningServer) -> AsyncIterator[tuple[WsimClient, WsimClient, str]]:
    async with friend_pair(srv.url, "cl") as trio:
        yield trio


@pytest.fixture
async def alice_ws(srv: RunningServer, pair: tuple[WsimClient, WsimClient, str]) -> AsyncIterator[Device]:
    a = pair[0]
    assert a.access_token is not None
    dev = make_device("websocket", srv.url, Account(a.user_id, a.access_token))
    await dev.open()
    dev.discard_messages()  # friend.accepted, released by the first sync
    yield dev
    await dev.close()


def _refused(srv: RunningServer, reason: str) -> float:
    return srv.node.metrics.transport_refused.value("mqtt", reason)


# ---------------------------------------------------------------------------------------------- stomp.py


async def test_stomp_py_client_logs_in_sends_receives_and_acks(
    srv: RunningServer, pair: tuple[WsimClient, WsimClient, str], alice_ws: Device
) -> None:
    import stomp

    _, bob, conv = pair
    inbox: queue.Queue[tuple[str, dict[str, str], str]] = queue.Queue()

    class Listener(stomp.ConnectionListener):  # type: ignore[misc]
        def on_message(self, frame: Any) -> None:
            inbox.put(("MESSAGE", dict(frame.headers), frame.body))

        def on_receipt(self, frame: Any) -> None:
            inbox.put(("RECEIPT", dict(frame.headers), frame.body))

        def on_error(self, frame: Any) -> None:
            inbox.put(("ERROR", dict(frame.headers), frame.body))

    conn = stomp.WSStompConnection(
        [("127.0.0.1", srv.port)],
        ws_path="/stomp",
        heartbeats=(10000, 10000),
        header={"Sec-WebSocket-Protocol": "v12.stomp"},
        reconnect_attempts_max=1,
    )
    conn.set_listener("t", Listener())

    async def next_frame(command: str, timeout: float = 10.0) -> tuple[dict[str, str], str]:
        deadline = time.monotonic() + timeout
        while True:
            cmd, headers, body = await asyncio.to_thread(
                inbox.get, True, max(0.01, deadline - time.monotonic())
            )
            if cmd == command:
                return headers, body
            assert cmd != "ERROR", (headers, body)

    try:
        await asyncio.to_thread(conn.connect, login="stomp-py", passcode=bob.access_token, wait=True)
        await asyncio.to_thread(
            conn.subscribe,
            destination="/user/queue/messages",
            id="q",
            ack="client-individual",
            headers={"receipt": "s1"},
        )
        assert (await next_frame("RECEIPT"))[0]["receipt-id"] == "s1"
        # receive from a native WebSocket user, and ack the STOMP way
        sent = await alice_ws.send(conv, "to a stomp.py client")
        while True:
            headers, body = await next_frame("MESSAGE")
            frame = orjson.loads(body)
            if frame["type"] == "message.new" and frame["msg"]["seq"] == sent["seq"]:
                break
        assert frame["msg"]["body"]["text"] == "to a stomp.py client"
        assert headers["wsim-conv"] == conv and headers["subscription"] == "q"
        await asyncio.to_thread(conn.ack, headers["ack"])
        receipt = await alice_ws.next_event("receipt", lambda e: (e.get("delivered") or 0) >= sent["seq"])
        assert receipt["user"] == bob.user_id
        # send to the native user with a plain-text SEND; the RECEIPT means stored
        await asyncio.to_thread(
            conn.send,
            destination=f"/conv/{conv}",
            body="from stomp.py",
            content_type="text/plain",
            headers={"cmid": "stomppy-1", "receipt": "m1"},
        )
        assert (await next_frame("RECEIPT"))[0]["receipt-id"] == "m1"
        got = await alice_ws.next_message()
        assert got["body"]["text"] == "from stomp.py" and got["cmid"] == "stomppy-1"
    finally:
        await asyncio.to_thread(conn.disconnect)


# ---------------------------------------------------------------------------------------------- mosquitto CLI


class Shell:
    """A mosquitto_sub process on the downlink, mosquitto_pub + openssl for uplinks."""

    def __init__(self, creds: dict[str, Any]) -> None:
        self.creds = creds
        self.lines: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.verifier = DownlinkVerifier(creds["key"], creds["downlink"], creds["down_floor"])
        self.refused: list[str] = []  # downlinks dropped as not from the bridge (or replayed)
        self.sub: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        b = self.creds["broker"]
        self.sub = await asyncio.create_subprocess_exec(
            "mosquitto_sub", "-h", b["host"], "-p", str(b["port"]), "-q", "1", "-t", self.creds["downlink"],
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.sub is not None and self.sub.stdout is not None
        while line := await self.sub.stdout.readline():
            try:
                self.lines.put_nowait(orjson.loads(self.verifier.verify(line.rstrip(b"\n"))))
            except DownlinkRefusedError as exc:
                self.refused.append(str(exc))
                self.lines.put_nowait({"type": "refused"})

    async def publish(
        self, frame: str, ts_ms: int | None = None, key: str | None = None, raw: str | None = None
    ) -> str:
        """Sign with openssl in a shell, publish with mosquitto_pub; returns the payload."""
        ts = ts_ms or time.time_ns() // 1_000_000
        topic = self.creds["uplink"]
        script = (
            f"mac=$(printf '%s\\n%s\\n%s' {shlex.quote(topic)} {ts} {shlex.quote(frame)}"
            f" | openssl dgst -sha256 -hmac {shlex.quote(key or self.creds['key'])} -r | cut -d' ' -f1); "
            f'payload="{ts} $mac "{shlex.quote(frame)}; '
            f"mosquitto_pub -h {self.creds['broker']['host']} -p {self.creds['broker']['port']} -q 1 "
            f'-t {shlex.quote(topic)} -m "$payload"; printf \'%s\' "$payload"'
        )
        if raw is not None:
            script = (
                f"mosquitto_pub -h {self.creds['broker']['host']} -p {self.creds['broker']['port']} -q 1 "
                f"-t {shlex.quote(topic)} -m {shlex.quote(raw)}; printf '%s' {shlex.quote(raw)}"
            )
        proc = await asyncio.create_subprocess_exec("bash", "-c", script, stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        assert proc.returncode == 0
        return out.decode()

    async def next(self, ftype: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            frame = await asyncio.wait_for(self.lines.get(), max(0.01, deadline - time.monotonic()))
            if frame.get("type") == ftype:
                return frame

    async def attach(self) -> dict[str, Any]:
        """Say hello until auth.ok shows the subscription is live (readiness by observation, not by sleeping)."""
        for _ in range(20):
            await self.publish('{"type":"auth"}')
            try:
                return await self.next("auth.ok", timeout=1.0)
            except TimeoutError:
                continue
        raise AssertionError("no auth.ok on the downlink")

    async def stop(self) -> None:
        if self.sub is not None and self.sub.returncode is None:
            self.sub.terminate()
            await self.sub.wait()
        if self._reader is not None:
            await self._reader


@pytest.fixture
async def shell(srv: RunningServer, pair: tuple[WsimClient, WsimClient, str]) -> AsyncIterator[Shell]:
    for tool in ("mosquitto_sub", "mosquitto_pub", "openssl"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is not installed")
    sh = Shell(await mqtt_credentials(srv.url, pair[1], "shell"))
    await sh.start()
    yield sh
    await sh.stop()


async def test_mosquitto_cli_user_chats_with_websocket_user(
    srv: RunningServer, pair: tuple[WsimClient, WsimClient, str], alice_ws: Device, shell: Shell
) -> None:
    _, bob, conv = pair
    ok = await shell.attach()
    assert ok["user"] == bob.user_id and ok["device"] == "shell"
    sent = await alice_ws.send(conv, "hello mosquitto_sub")
    new = await shell.next("message.new")
    assert new["msg"]["body"]["text"] == "hello mosquitto_sub" and new["msg"]["seq"] == sent["seq"]
    await shell.publish(orjson.dumps({"type": "message.ack", "conv": conv, "seq": sent["seq"]}).decode())
    await alice_ws.next_event("receipt", lambda e: (e.get("delivered") or 0) >= sent["seq"])
    await shell.publish(
        orjson.dumps(
            {"type": "message.send", "cmid": "sh-1", "conv": conv, "text": "hello from mosquitto_pub"}
        ).decode()
    )
    stored = await shell.next("message.sent")
    got = await alice_ws.next_message()
    assert got["body"]["text"] == "hello from mosquitto_pub" and got["id"] == stored["id"]
    assert got["from"] == bob.user_id


async def test_bridge_refuses_what_it_cannot_attribute(
    srv: RunningServer, pair: tuple[WsimClient, WsimClient, str], alice_ws: Device, shell: Shell
) -> None:
    alice, _, conv = pair
    await shell.attach()

    def send(cmid: str, text: str) -> str:
        return orjson.dumps({"type": "message.send", "cmid": cmid, "conv": conv, "text": text}).decode()

    # wrong key (someone who knows the topic but not the key)
    before = _refused(srv, "mac")
    await shell.publish(send("forged-1", "forged"), key="0" * 64)
    # a payload that is not signed at all
    await shell.publish("", raw=send("forged-2", "unsigned"))
    # Bob's key on Alice's credential (claiming her identity), and on a credential with one byte changed
    alice_creds = await mqtt_credentials(srv.url, alice, "alice-mqtt")
    as_alice = Shell({**shell.creds, "uplink": alice_creds["uplink"]})
    await as_alice.publish(send("forged-3", "as alice"))
    mine = shell.creds["uplink"]
    flipped = mine[:-3] + ("A" if mine[-3] != "A" else "B") + mine[-2:]
    await Shell({**shell.creds, "uplink": flipped}).publish(send("forged-4", "tampered"))
    # stale timestamp, then a replay of a valid uplink
    await shell.publish(send("stale-1", "old"), ts_ms=time.time_ns() // 1_000_000 - 3_600_000)
    payload = await shell.publish(send("real-1", "real one"))
    await shell.publish("", raw=payload)
    # the real one arrives, exactly once; nothing else does
    got = await alice_ws.next_message()
    assert got["body"]["text"] == "real one"
    await shell.publish(
        send("marker-1", "marker")
    )  # uplinks are taken in order: a wrongly accepted one comes first
    assert (await alice_ws.next_message())["body"]["text"] == "marker"
    assert _refused(srv, "mac") >= before + 2
    assert _refused(srv, "format") >= 1
    assert _refused(srv, "credential") >= 1
    assert _refused(srv, "stale") >= 1
    assert _refused(srv, "replay") >= 1
    page = await alice.history(conv, limit=50)
    assert [m["cmid"] for m in page["messages"] if m["kind"] == "text"] == ["real-1", "marker-1"]


async def test_logged_out_credentials_are_refused(
    srv: RunningServer, pair: tuple[WsimClient, WsimClient, str], shell: Shell
) -> None:
    _, bob, _ = pair
    await shell.attach()
    await bob.logout()
    closed = await shell.next("closed")
    assert closed["code"] == 4010
    await shell.publish('{"type":"auth"}')
    err = await shell.next("error")
    assert err["code"] == "unauthorized"
    assert _refused(srv, "logged_out") >= 1


async def _outsider_pub(creds: dict[str, Any], topic: str, payload: str, *, retain: bool = False) -> None:
    """An anonymous mosquitto_pub, as anyone on an open broker could run it."""
    b = creds["broker"]
    argv = ["mosquitto_pub", "-h", b["host"], "-p", str(b["port"]), "-q", "1", "-t", topic, "-m", payload]
    proc = await asyncio.create_subprocess_exec(*argv, *(["-r"] if retain else []))
    assert await proc.wait() == 0


async def _next_real(shell: Shell, ftype: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The next verified frame of ``ftype`` and every frame (or refusal) before it."""
    before: list[dict[str, Any]] = []
    while (frame := await asyncio.wait_for(shell.lines.get(), 10)).get("type") != ftype:
        before.append(frame)
    return frame, before


async def test_h2_injected_retained_and_replayed_downlinks_are_dropped(
    srv: RunningServer, pair: tuple[WsimClient, WsimClient, str], alice_ws: Device, shell: Shell
) -> None:
    """H2: downlinks are signed with the device's key; the device shows only what the bridge signed, once."""
    alice, _, conv = pair
    await shell.attach()
    down = shell.creds["downlink"]
    fake = {"type": "message.new", "msg": {"from": alice.user_id, "conv": conv, "seq": 999, "kind": "text",
            "body": {"text": "fake"}}}  # fmt: skip
    await _outsider_pub(shell.creds, down, orjson.dumps(fake).decode(), retain=True)
    await _outsider_pub(shell.creds, down, '{"type":"closed","code":4010,"reason":"fake"}')
    await _outsider_pub(shell.creds, down, f"{2**62} {'0' * 64} " + orjson.dumps(fake).decode())
    sent = await alice_ws.send(conv, "the real one")
    new, before = await _next_real(shell, "message.new")
    assert new["msg"]["seq"] == sent["seq"] and new["msg"]["body"]["text"] == "the real one"
    assert [f["type"] for f in before if f["type"] in ("refused", "message.new", "closed")] == ["refused"] * 3
    assert len(shell.refused) == 3
    # A later subscriber gets the retained fake first: refused as well; then a genuine frame replayed is refused.
    late = Shell(shell.creds)
    await late.start()
    try:
        await _next_real(late, "refused")
        assert "signature" in late.refused[0] or "payload" in late.refused[0]
        await shell.publish('{"type":"ping","ts":1}')
        pong, _ = await _next_real(late, "pong")
        assert pong["ts"] == 1
    finally:
        await late.stop()
    await _outsider_pub(shell.creds, down, "", retain=True)  # clear the retained fake


async def test_h3_auth_renew_is_refused_over_mqtt(
    srv: RunningServer, pair: tuple[WsimClient, WsimClient, str], shell: Shell
) -> None:
    """H3: a token must never cross the broker, so auth.renew over MQTT is refused (renew via credentials)."""
    _, bob, _ = pair
    await shell.attach()
    await shell.publish(orjson.dumps({"type": "auth.renew", "token": bob.access_token}).decode())
    err, _ = await _next_real(shell, "error")
    assert err["code"] == "invalid" and "MQTT" in err["message"]


async def test_h5_re_hello_does_not_close_the_device_itself(
    srv: RunningServer, pair: tuple[WsimClient, WsimClient, str], alice_ws: Device, shell: Shell
) -> None:
    """H5: the hello after a broker reconnect replaces the link without a ``closed 4011`` on its own downlink."""
    _, _, conv = pair
    await shell.attach()
    await shell.publish('{"type":"auth"}')
    _, before = await _next_real(shell, "auth.ok")
    assert [f for f in before if f.get("type") == "closed"] == []
    sent = await alice_ws.send(conv, "after the re-hello")
    new, before = await _next_real(shell, "message.new")
    assert new["msg"]["seq"] == sent["seq"] and [f for f in before if f.get("type") == "closed"] == []


async def test_h6_topics_hide_the_session_and_change_per_login(
    srv: RunningServer, pair: tuple[WsimClient, WsimClient, str], alice_ws: Device, shell: Shell
) -> None:
    """H6: the uplink topic does not show the login session id; each login gets its own downlink topic, and a
    logged-out one carries nothing of the next login."""
    _, bob, conv = pair
    assert bob.access_token is not None
    claims = bob.access_token.split(".")[1]
    sid = orjson.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["sid"]
    up = shell.creds["uplink"].rsplit("/", 1)[1]
    assert sid not in shell.creds["uplink"] and sid not in shell.creds["downlink"]
    for part in up.split("."):  # (the old credential was "<base64 JSON claims>.<signature>")
        assert sid.encode() not in base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    assert str(bob.user_id) not in shell.creds["downlink"].split("/")
    await shell.attach()
    await bob.logout()
    await _next_real(shell, "closed")
    assert bob.user is not None
    await bob.login(bob.user["username"], "password-123")
    fresh = Shell(await mqtt_credentials(srv.url, bob, "shell"))
    assert (
        fresh.creds["downlink"] != shell.creds["downlink"] and fresh.creds["uplink"] != shell.creds["uplink"]
    )
    await fresh.start()
    try:
        await fresh.attach()
        sent = await alice_ws.send(conv, "for the new login")
        new, _ = await _next_real(fresh, "message.new")
        assert new["msg"]["seq"] == sent["seq"]
        # barrier on the old topic: once this marker is through, anything published there before it is too
        await _outsider_pub(shell.creds, shell.creds["downlink"], "marker")
        _, before = await _next_real(shell, "refused")
        assert [f for f in before if f.get("type") == "message.new"] == []
    finally:
        await fresh.stop()


def test_openssl_recipe_matches_the_server() -> None:
    """The shell recipe in docs/transports.md computes the same MAC as the server (no broker involved)."""
    from core.protocol.mqtt_auth import sign

    if shutil.which("openssl") is None:
        unavailable("openssl is not installed")
    import subprocess

    topic, ts, frame, key = "wsim/up/abc.def", 1764216000123, '{"type":"ping"}', "k" * 64
    out = subprocess.run(
        [
            "bash",
            "-c",
            f"printf '%s\\n%s\\n%s' '{topic}' {ts} '{frame}' | openssl dgst -sha256 -hmac {key} -r",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ},
    ).stdout.split()[0]
    assert out == sign(key, topic, ts, frame.encode())
