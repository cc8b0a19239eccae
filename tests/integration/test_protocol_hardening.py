"""Issue 14, round 2 of protocol hardening: a regression test per finding (M1-M4, L2, L3, L5) against a real
server over real sockets. docs/security.md lists them under "Findings of 2026-12-02"."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from core.clientfaults import CLIENT_FAULTS, ClientFaultLog
from core.sdk import ClientError, WsimClient
from tests.conftest import ClientFactory, ServerFactory
from tests.integration.test_security import authed, closed_with, next_of, ws_url
from tests.support.helpers import eventually, make_friends
from tests.support.server import RunningServer

SECRET = "test-secret-for-claim-checks-0123456789abcdef"


async def send(ws: ClientConnection, frame: dict[str, Any]) -> None:
    await ws.send(orjson.dumps(frame).decode())


async def settled(ws: ClientConnection) -> None:
    """Barrier: frames of one socket are handled in order, so all sent before are done once the pong is back."""
    await send(ws, {"type": "ping", "ts": 7})
    await next_of(ws, "pong")


RawSocket = Callable[[WsimClient], Awaitable[ClientConnection]]


@pytest.fixture
async def raw_socket(server: RunningServer) -> AsyncIterator[RawSocket]:
    """``await raw_socket(client)``: a raw socket past ``auth.ok`` as the client's user, for frames the SDK would
    never send; closed at teardown."""
    opened: list[ClientConnection] = []

    async def open_as(client: WsimClient) -> ClientConnection:
        ws = await authed(server, client.access_token)
        opened.append(ws)
        return ws

    yield open_as
    for ws in opened:
        await ws.close()


# --------------------------------------------------------------------------------- M1 receipt amplification


async def test_reads_and_acks_that_do_not_advance_send_no_receipts(
    raw_socket: RawSocket, make_client: ClientFactory
) -> None:
    owner, reader, watcher = await make_client(), await make_client(), await make_client()
    await owner.befriend(reader)
    await owner.befriend(watcher)
    conv = (await owner.create_group("amp", [reader.user_id, watcher.user_id]))["conv"]
    last = 0
    for i in range(3):
        sent = await owner.send(conv, f"m{i}")
        assert sent is not None
        last = sent["seq"]
    rws = await raw_socket(reader)
    wws = await raw_socket(watcher)
    await send(rws, {"type": "message.read", "conv": conv, "seq": last})
    first = await next_of(wws, "receipt")
    while first["conv"] != conv:
        first = await next_of(wws, "receipt")
    assert first["read"] == last and first["user"] == reader.user_id
    for _ in range(40):  # none of these moves a mark
        await send(rws, {"type": "message.read", "conv": conv, "seq": 1})
        await send(rws, {"type": "message.ack", "conv": conv, "seq": 1})
    await settled(rws)
    more = await owner.send(conv, "one more")
    assert more is not None
    await send(rws, {"type": "message.read", "conv": conv, "seq": more["seq"]})
    receipts: list[dict[str, Any]] = []
    while True:  # everything the watcher got about the group, up to the receipt of the real advance
        frame = await next_of(wws, "receipt")
        if frame["conv"] != conv:
            continue  # the SDK clients' own acks of their direct chats (friend.accepted notices)
        receipts.append(frame)
        if frame.get("read") == more["seq"]:
            break
    assert receipts == [{"type": "receipt", "conv": conv, "user": reader.user_id, "read": more["seq"]}]


async def test_a_burst_of_acks_leaves_as_few_coalesced_receipts(
    raw_socket: RawSocket, make_client: ClientFactory
) -> None:
    """Issue 11: one receipt per conversation per window, carrying the highest mark, not one per ack."""
    alice, bob = await make_client(), await make_client(connect=False)
    conv = await make_friends(alice, bob)
    seqs = []
    for i in range(20):
        sent = await alice.send(conv, f"m{i}")
        assert sent is not None
        seqs.append(sent["seq"])
    bws = await raw_socket(bob)
    for seq in seqs:  # one ack per message, as fast as the socket takes them
        await send(bws, {"type": "message.ack", "conv": conv, "seq": seq})
    got: list[int] = []
    while not got or got[-1] != seqs[-1]:
        ev = await alice.next_event("receipt", timeout=10, where=lambda e: e["conv"] == conv)
        if ev.get("delivered") is not None:
            got.append(ev["delivered"])
    assert got == sorted(set(got)) and len(got) < len(seqs)


# --------------------------------------------------------------------------------- M2 forged delivered mark


async def test_an_ack_beyond_the_newest_message_is_clamped(
    raw_socket: RawSocket, make_client: ClientFactory
) -> None:
    alice, bob = await make_client(), await make_client(connect=False)
    conv = await make_friends(alice, bob)
    sent = await alice.send(conv, "only one")
    assert sent is not None
    bws = await raw_socket(bob)
    await send(bws, {"type": "message.ack", "conv": conv, "seq": 10**9})
    await settled(bws)
    receipt = await alice.next_event("receipt", timeout=10, where=lambda e: e["conv"] == conv)
    assert receipt["delivered"] == sent["seq"]
    await bws.close()

    async def bob_delivered() -> int:
        marks = (await alice.request("GET", f"/api/conversations/{conv}/receipts"))["marks"]
        return int(marks.get(bob.user_id, {}).get("delivered", 0))

    for _ in range(200):  # marks are written in batches
        if await bob_delivered() == sent["seq"]:
            break
        await asyncio.sleep(0.02)
    assert await bob_delivered() == sent["seq"]


# --------------------------------------------------------------------------------- M3 presence


async def test_online_status_is_shown_only_to_friends_who_are_not_blocked(make_client: ClientFactory) -> None:
    alice, friend, stranger = await make_client(), await make_client(), await make_client()
    await make_friends(alice, friend)
    name = alice.user["username"] if alice.user else ""

    async def seen_by(viewer: WsimClient) -> tuple[bool, bool, bool]:
        one = (await viewer.request("GET", f"/api/users/{alice.user_id}"))["online"]
        found = (await viewer.request("GET", "/api/users/search", params={"q": name}))["users"]
        listed = [u["online"] for u in found if u["id"] == alice.user_id]
        friends = (await viewer.request("GET", "/api/friends"))["friends"]
        as_friend = [f["online"] for f in friends if f["user"]["id"] == alice.user_id]
        return one, listed == [True], as_friend == [True]

    assert await seen_by(friend) == (True, True, True)
    assert await seen_by(stranger) == (False, False, False)
    await alice.request("PUT", f"/api/blocks/{friend.user_id}")
    assert await seen_by(friend) == (False, False, False)
    assert (await alice.request("GET", "/api/users/me"))["online"] is True  # one's own status


# --------------------------------------------------------------------------------- L2 claims


def _token(**claims: Any) -> str:
    now = int(time.time())
    base: dict[str, Any] = {"typ": "access", "iat": now, "exp": now + 600}
    return jwt.encode({**base, **claims}, SECRET, algorithm="HS256")


async def test_every_token_claim_is_type_checked(start_server: ServerFactory) -> None:
    srv = await start_server({"auth": {"jwt_secret": SECRET}})
    alice, bob = WsimClient(srv.url), WsimClient(srv.url)
    try:
        await alice.register("claims_alice", "password-123")
        await bob.register("claims_bob", "password-123")
        sid = str(jwt.decode(alice.access_token or "", SECRET, algorithms=["HS256"])["sid"])
        forged = {
            "sub of another user": _token(sub=bob.user_id, sid=sid),
            "sub of nobody": _token(sub="123456789", sid=sid),
            "exp 2**70": _token(sub=alice.user_id, sid=sid, exp=2**70),
            "exp as a string": _token(sub=alice.user_id, sid=sid, exp=str(int(time.time()) + 600)),
            "sub as a number": _token(sub=int(alice.user_id), sid=sid),
            "sid as a number": _token(sub=alice.user_id, sid=5),
        }
        async with httpx.AsyncClient(base_url=srv.url) as http:
            for what, token in forged.items():
                r = await http.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
                assert r.status_code == 401, (what, r.status_code, r.text)
                assert r.json()["error"]["code"] == "unauthorized", what
                async with connect(ws_url(srv), open_timeout=5) as ws:
                    await send(ws, {"type": "auth", "token": token, "device": "d1"})
                    frame = orjson.loads(await ws.recv())
                    assert frame["type"] == "error" and frame["code"] == "unauthorized", (what, frame)
                    assert await closed_with(ws) == 4001, what
        # the real token still works
        assert (await alice.request("GET", "/api/users/me"))["id"] == alice.user_id
    finally:
        await alice.close()
        await bob.close()


# --------------------------------------------------------------------------------- L3 group existence oracle


async def test_a_missing_group_and_someone_elses_answer_alike(
    raw_socket: RawSocket, make_client: ClientFactory
) -> None:
    owner, friend, outsider = await make_client(), await make_client(), await make_client()
    await owner.befriend(friend)
    conv = (await owner.create_group("closed", [friend.user_id]))["conv"]
    ws = await raw_socket(outsider)
    answers = []
    for target in (conv, "g:999999999999"):
        for frame in (
            {"type": "message.send", "cmid": f"c{len(answers)}", "conv": target, "text": "hi"},
            {"type": "typing", "conv": target},
            {"type": "message.read", "conv": target, "seq": 1},
        ):
            await send(ws, frame)
            err = await next_of(ws, "error")
            answers.append((err["code"], err["message"]))
    assert answers[:3] == answers[3:], answers
    assert {code for code, _ in answers} == {"not_member"}


# --------------------------------------------------------------------------------- L5 strict types and edges


async def test_frames_have_strict_types(raw_socket: RawSocket, make_client: ClientFactory) -> None:
    alice, bob = await make_client(), await make_client(connect=False)
    conv = await make_friends(alice, bob)
    ws = await raw_socket(bob)
    for bad in ("3", True, 3.0):
        await send(ws, {"type": "message.ack", "conv": conv, "seq": bad})
        err = await next_of(ws, "error")
        assert err["code"] == "invalid" and "seq" in err["message"], (bad, err)
    await send(ws, {"type": "sync", "cursors": {conv: "1"}})
    assert (await next_of(ws, "error"))["code"] == "invalid"


async def test_whitespace_password_is_refused(server: RunningServer) -> None:
    c = WsimClient(server.url)
    try:
        with pytest.raises(ClientError) as info:
            await c.register("spaces_only", " " * 12)
        assert info.value.status == 422 and info.value.code == "invalid"
    finally:
        await c.close()


async def test_a_sync_cursor_beyond_the_newest_message_gets_the_head(
    raw_socket: RawSocket, make_client: ClientFactory
) -> None:
    alice, bob = await make_client(), await make_client(connect=False)
    conv = await make_friends(alice, bob)
    sent = await alice.send(conv, "hello")
    assert sent is not None
    ws = await raw_socket(bob)
    await send(ws, {"type": "sync", "cursors": {conv: 500}})
    batch = await next_of(ws, "sync.batch")
    assert batch["conv"] == conv and batch["messages"] == [] and batch["last_seq"] == sent["seq"]
    assert batch["more"] is False
    await next_of(ws, "sync.done")


# --------------------------------------------------------------------------------- L1 client faults in the log


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def log_records() -> Iterator[list[logging.LogRecord]]:
    """What reaches the handlers of uvicorn's error logger and of ours (after their filters)."""
    handler = _Records()
    loggers = [logging.getLogger("uvicorn.error"), logging.getLogger("core")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    try:
        yield handler.records
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)


async def test_client_faults_are_one_line_not_tracebacks(
    server: RunningServer, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CLIENT_FAULTS, "interval_s", 0.0)  # every fault reported, so the line can be awaited
    c = await make_client(connect=False)
    with log_records() as records:
        for _ in range(3):
            ws = await authed(server, c.access_token)
            await ws.send(b"\xff\xfe{", text=True)
            assert await closed_with(ws) == 1007
        host, port = server.url.removeprefix("http://").split(":")
        _, writer = await asyncio.open_connection(host, int(port))
        boundary = "XyZ"
        writer.write(
            (
                f"POST /api/files HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {c.access_token}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 1000000\r\n\r\n"
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="cut.txt"\r\n'
                "Content-Type: text/plain\r\n\r\n"
            ).encode()
            + b"a" * 50_000
        )
        await writer.drain()
        tmp = Path(server.node.settings.data_path) / "files" / "tmp"
        await eventually(lambda: any(tmp.glob("*.part")), timeout=5)
        writer.close()
        await eventually(lambda: any("(disconnect)" in r.getMessage() for r in records), timeout=5)
    assert [r.getMessage() for r in records if r.levelno >= logging.ERROR or r.exc_info] == []
    assert len([r for r in records if "(invalid_utf8)" in r.getMessage()]) == 3


def test_client_fault_lines_are_rate_limited_and_count_what_they_fold() -> None:
    now = [0.0]
    faults = ClientFaultLog(interval_s=10.0, now=lambda: now[0])
    assert [faults.admit("x") for _ in range(5)] == [1, 0, 0, 0, 0]
    assert faults.admit("y") == 1  # kinds are separate
    now[0] = 10.0
    assert faults.admit("x") == 5  # the four folded ones and this one


# --------------------------------------------------------------------------------- L4 header size


@pytest.mark.parametrize("kib", [65, 70, 93])
async def test_headers_over_the_bound_in_one_chunk_get_431(start_server: ServerFactory, kib: int) -> None:
    """The whole request arrives in one write (headers complete): still 431 past 64 KiB of headers."""
    srv = await start_server()
    host, port = srv.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    pad = b"a" * (kib * 1024)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + pad + b"\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    status_line = answer.split(b"\r\n", 1)[0].decode(errors="replace")
    assert status_line == "HTTP/1.1 431 Request Header Fields Too Large"
    assert b'"too_large"' in answer


async def test_headers_just_under_the_bound_pass(start_server: ServerFactory) -> None:
    srv = await start_server()
    async with httpx.AsyncClient(base_url=srv.url) as http:
        r = await http.get("/healthz", headers={"X-Pad": "a" * (60 * 1024)})
        assert r.status_code == 200


# --------------------------------------------------------------------------------- doc gaps made true in code


async def test_history_paging_flags_and_before_with_after(make_client: ClientFactory) -> None:
    alice, bob = await make_client(), await make_client(connect=False)
    conv = await make_friends(alice, bob)  # seq 1 is the friend.accepted notice
    for i in range(5):
        await alice.send(conv, f"m{i}")  # seqs 2..6
    page = await alice.history(conv, before=4, limit=2)
    assert [m["seq"] for m in page["messages"]] == [2, 3]
    assert page["has_older"] is True and page["has_newer"] is True
    newest = await alice.request("GET", f"/api/conversations/{conv}/messages", params={"limit": 2})
    assert [m["seq"] for m in newest["messages"]] == [5, 6] and newest["has_newer"] is False
    with pytest.raises(ClientError) as info:
        await alice.request("GET", f"/api/conversations/{conv}/messages", params={"before": 4, "after": 1})
    assert info.value.status == 422 and info.value.code == "invalid"


def test_default_origins_follow_the_port() -> None:
    from core.config import ServerConfig

    assert ServerConfig(port=9123).origins == ["http://127.0.0.1:9123", "http://localhost:9123"]
    assert ServerConfig(port=9123, origins=["https://chat.example"]).origins == ["https://chat.example"]


async def test_metrics_can_require_a_bearer_token(start_server: ServerFactory) -> None:
    srv = await start_server({"server": {"metrics_token": "scrape-me-0123456789"}})
    async with httpx.AsyncClient(base_url=srv.url) as http:
        assert (await http.get("/metrics")).status_code == 401
        wrong = await http.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
        ok = await http.get("/metrics", headers={"Authorization": "Bearer scrape-me-0123456789"})
        assert ok.status_code == 200 and "wsim_" in ok.text


async def test_request_ids_are_echoed_by_errors_pongs_and_sync_done(
    raw_socket: RawSocket, make_client: ClientFactory
) -> None:
    alice = await make_client(connect=False)
    ws = await raw_socket(alice)
    await send(ws, {"type": "message.recall", "id": "123456", "req": "r-1"})
    await send(ws, {"type": "message.recall", "id": "654321", "req": "r-2"})
    errs = [await next_of(ws, "error"), await next_of(ws, "error")]
    assert [(e["req"], e["ref"]) for e in errs] == [("r-1", "message.recall"), ("r-2", "message.recall")]
    await send(ws, {"type": "message.ack", "conv": "d:1:2", "seq": "x", "req": "r-3"})  # invalid frame
    assert (await next_of(ws, "error"))["req"] == "r-3"
    await send(ws, {"type": "ping", "req": "r-4"})
    assert (await next_of(ws, "pong"))["req"] == "r-4"
    await send(ws, {"type": "sync", "cursors": {}, "req": "r-5"})
    assert (await next_of(ws, "sync.done"))["req"] == "r-5"
    await send(ws, {"type": "ping"})
    assert "req" not in await next_of(ws, "pong")
