"""Security defences against a real server over real sockets (docs/security.md names the test for each).

What the older modules already prove (test_auth.py: Origin on /ws, socket auth, refresh reuse, logout, token
expiry; test_files.py: upload type, size, pixel bombs, signed links; test_messaging.py: heartbeat reaping,
non-members) is not repeated here; this module covers the rest of the list."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from core.sdk import ClientError, SendError, WsimClient
from tests.conftest import ClientFactory, ServerFactory, UrlClientFactory
from tests.support.helpers import eventually, make_friends
from tests.support.server import RunningServer


def ws_url(server: RunningServer, path: str = "/ws") -> str:
    return server.url.replace("http", "ws") + path


async def authed(server: RunningServer, token: str | None, **kwargs: Any) -> ClientConnection:
    """A raw socket past ``auth.ok`` (the caller closes it)."""
    ws = await connect(ws_url(server), **kwargs)
    await ws.send(orjson.dumps({"type": "auth", "token": token, "device": os.urandom(4).hex()}).decode())
    ok = orjson.loads(await ws.recv())
    assert ok["type"] == "auth.ok", ok
    return ws


async def closed_with(ws: ClientConnection, timeout: float = 5.0) -> int | None:
    """Read until the server closes; the close code it sent."""
    with contextlib.suppress(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    return ws.close_code


async def next_of(ws: ClientConnection, ftype: str, timeout: float = 5.0) -> dict[str, Any]:
    while True:
        frame: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), timeout))
        if frame["type"] == ftype:
            return frame


# ---------------------------------------------------------------------------------------------- handshake


async def test_foreign_origin_gets_json_403_on_ws_and_stomp(start_server: ServerFactory) -> None:
    srv = await start_server({"strategies": {"transports": [{"kind": "websocket"}, {"kind": "stomp"}]}})
    for path, extra in (("/ws", {}), ("/stomp", {"subprotocols": ["v12.stomp"]})):
        with pytest.raises(InvalidStatus) as info:
            async with connect(ws_url(srv, path), origin="http://evil.example", **extra):  # type: ignore[arg-type]
                pass
        response = info.value.response
        assert response.status_code == 403
        assert orjson.loads(response.body or b"{}")["error"]["code"] == "forbidden"
        async with connect(ws_url(srv, path), origin="http://testserver", **extra):  # type: ignore[arg-type]
            pass


async def test_sockets_per_address_are_limited_before_authentication(start_server: ServerFactory) -> None:
    srv = await start_server(
        {
            "limits": {"max_connections_per_address": 3},
            "strategies": {"transports": [{"kind": "websocket"}, {"kind": "stomp"}]},
        }
    )
    async with contextlib.AsyncExitStack() as stack:
        # never authenticated: they count all the same (that is the attack)
        for _ in range(2):
            await stack.enter_async_context(connect(ws_url(srv)))
        stomp = await stack.enter_async_context(connect(ws_url(srv, "/stomp"), subprotocols=["v12.stomp"]))  # type: ignore[list-item]
        for path in ("/ws", "/stomp"):
            with pytest.raises(InvalidStatus) as info:
                async with connect(ws_url(srv, path)):
                    pass
            assert info.value.response.status_code == 429
            body = orjson.loads(info.value.response.body or b"{}")
            assert body["error"]["code"] == "rate_limited"
            assert info.value.response.headers["Retry-After"] == "1"
        await stomp.close()
        await eventually(lambda: srv.node.address_slots.count("127.0.0.1") == 2, timeout=5)
        async with connect(ws_url(srv)):  # a slot was freed
            assert srv.node.address_slots.count("127.0.0.1") == 3
    await eventually(lambda: srv.node.address_slots.count("127.0.0.1") == 0, timeout=5)


async def test_permessage_deflate_is_refused_and_compressed_frames_close_1002(server: RunningServer) -> None:
    async with connect(ws_url(server), compression="deflate") as ws:  # the client offers permessage-deflate
        assert ws.protocol.extensions == []
        assert "sec-websocket-extensions" not in (ws.response.headers if ws.response else {})
        # A decompression bomb: 10 MB of zeros deflated to ~10 KB, sent with RSV1 (the "compressed" bit). Without
        # the extension the server must refuse the frame as a protocol error, never inflate it.
        deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
        bomb = deflater.compress(b"\0" * 10_000_000) + deflater.flush(zlib.Z_SYNC_FLUSH)[:-4]
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(bomb))
        header = bytes([0x80 | 0x40 | 0x1, 0x80 | 127]) + struct.pack(">Q", len(bomb)) + mask
        transport = ws.transport
        transport.write(header + masked)
        code = await closed_with(ws)
        assert code in (1002, 1006)  # 1002 sent; 1006 if the server dropped the TCP before our reader saw it


async def test_slowloris_headers_are_cut_and_huge_headers_get_431(start_server: ServerFactory) -> None:
    srv = await start_server({"server": {"header_timeout_s": 0.5, "max_header_bytes": 4096}})
    host, port = srv.url.removeprefix("http://").split(":")

    async def silent_for(data: bytes) -> float:
        """Send ``data`` then nothing: seconds until the server closes the connection."""
        reader, writer = await asyncio.open_connection(host, int(port))
        start = time.monotonic()
        writer.write(data)
        await asyncio.wait_for(reader.read(), 10)  # EOF when the server closes
        writer.close()
        return time.monotonic() - start

    assert await silent_for(b"") < 5  # connected, never sent a byte
    assert await silent_for(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a") < 5  # headers never finish
    # a kept-alive connection whose next request dribbles
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert first.startswith(b"HTTP/1.1 200")
    writer.write(b"GET /healthz HTTP/1.1\r\n")
    start = time.monotonic()
    with contextlib.suppress(ConnectionError):
        while await asyncio.wait_for(reader.read(65536), 10):  # the rest of the first response, then EOF
            pass
    assert time.monotonic() - start < 5
    writer.close()
    # headers larger than the bound: 431 with a JSON body, even while they keep coming
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 8000 + b"\r\n")
    answer = await asyncio.wait_for(reader.read(), 5)
    assert answer.startswith(b"HTTP/1.1 431") and b'"too_large"' in answer
    writer.close()
    # a body bigger than the header bound is fine: only headers are bounded
    async with httpx.AsyncClient(base_url=srv.url) as http:
        r = await http.post("/api/auth/login", json={"username": "x" * 20_000, "password": "y" * 20_000})
        assert r.status_code in (401, 422)


# ---------------------------------------------------------------------------------------------- limits


async def test_frame_and_text_limits_over_a_socket(
    start_server: ServerFactory, client_on: UrlClientFactory
) -> None:
    srv = await start_server({"limits": {"max_frame_bytes": 4096, "max_text_chars": 100}})
    alice, bob = await client_on(srv.url, connect=False), await client_on(srv.url, connect=False)
    await alice.befriend(bob)
    conv = alice.direct_conv(alice.user_id, bob.user_id)
    ws = await authed(srv, alice.access_token)
    # text one character over the limit: an error frame, the socket stays
    too_long = {"type": "message.send", "cmid": "t1", "conv": conv, "text": "x" * 101}
    await ws.send(orjson.dumps(too_long).decode())
    err = await next_of(ws, "error")
    assert err["code"] == "too_long" and err["ref"] == "t1"
    await ws.send(orjson.dumps({**too_long, "text": "x" * 100}).decode())
    assert (await next_of(ws, "message.sent"))["cmid"] == "t1"
    # a frame over max_frame_bytes (but under the transport's hard cap): closed 1009 by the session
    await ws.send(orjson.dumps({"type": "ping", "pad": "x" * 4200}).decode())
    assert await closed_with(ws) == 1009
    # a frame over the transport's cap (max_frame_bytes + 1 KiB) is refused by the WebSocket layer: also 1009
    ws = await authed(srv, alice.access_token)
    await ws.send("x" * 10_000)
    assert await closed_with(ws) == 1009


async def test_message_rate_limit_answers_then_closes_4029(
    start_server: ServerFactory, clients: list[WsimClient]
) -> None:
    srv = await start_server({"limits": {"rate_per_s": 2, "rate_burst": 3, "rate_strikes": 3}})
    c = WsimClient(srv.url)
    clients.append(c)
    await c.register("flooder", "password-123")
    ws = await authed(srv, c.access_token)
    for _ in range(12):
        await ws.send('{"type":"sync","cursors":{}}')
    frames = []
    with contextlib.suppress(ConnectionClosed):
        while True:
            frames.append(orjson.loads(await asyncio.wait_for(ws.recv(), 5)))
    limited = [f for f in frames if f["type"] == "error" and f["code"] == "rate_limited"]
    assert limited and all(f["retry_after_ms"] > 0 for f in limited)
    assert ws.close_code == 4029


# ---------------------------------------------------------------------------------------------- identity


async def test_refresh_reuse_revokes_the_family_and_closes_its_sockets(
    start_server: ServerFactory, make_client: ClientFactory
) -> None:
    # no grace period: the thief's replay comes right after the legitimate rotation (auth.refresh_reuse_grace_s)
    server = await start_server({"auth": {"refresh_reuse_grace_s": 0}})
    alice = await make_client(connect=False, url=server.url)
    stolen = alice.refresh_token
    async with httpx.AsyncClient(base_url=server.url) as http:  # a refresh token is not an access token
        r = await http.get("/api/users/me", headers={"Authorization": f"Bearer {stolen}"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    async with connect(ws_url(server)) as raw:
        await raw.send(orjson.dumps({"type": "auth", "token": stolen}).decode())
        assert (await next_of(raw, "error"))["code"] == "unauthorized"
        assert await closed_with(raw) == 4001
    ws = await authed(server, alice.access_token)
    await alice.refresh()  # the legitimate client rotates; the thief replays the old token
    async with httpx.AsyncClient(base_url=server.url) as thief:
        r = await thief.post("/api/auth/refresh", json={"refresh_token": stolen})
        assert r.status_code == 401 and r.json()["error"]["code"] == "token_reused"
    assert await closed_with(ws) == 4010  # the socket of that login is closed...
    with pytest.raises(ClientError) as info:  # ...and every token descended from it is dead
        await alice.refresh()
    assert info.value.status == 401
    with pytest.raises(ClientError):
        await alice.request("GET", "/api/users/me")


async def test_failed_logins_are_throttled_per_address(start_server: ServerFactory) -> None:
    srv = await start_server({"auth": {"login_failures_per_minute": 3}})
    async with httpx.AsyncClient(base_url=srv.url) as http:
        codes = []
        for i in range(6):  # a different username each time: only the address ties them together
            r = await http.post("/api/auth/login", json={"username": f"spray{i}", "password": "password-123"})
            codes.append(r.status_code)
        assert codes[:3] == [401, 401, 401] and codes[-1] == 429
        assert r.json()["error"]["code"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1


# ---------------------------------------------------------------------------------------------- authorization


async def test_sender_comes_from_the_token_not_the_frame(
    server: RunningServer, make_client: ClientFactory
) -> None:
    alice, bob = await make_client(), await make_client()
    conv = await make_friends(alice, bob)
    ws = await authed(server, alice.access_token)
    for field, value in (("from", bob.user_id), ("sender", bob.user_id), ("user", bob.user_id)):
        frame = {
            "type": "message.send",
            "cmid": f"spoof-{field}",
            "conv": conv,
            "text": "it was bob",
            field: value,
        }
        await ws.send(orjson.dumps(frame).decode())
        err = await next_of(ws, "error")
        assert err["code"] == "invalid" and field in err["message"]
    await ws.send(
        orjson.dumps({"type": "message.send", "cmid": "honest", "conv": conv, "text": "me"}).decode()
    )
    await next_of(ws, "message.sent")
    await ws.close()
    stored = (await bob.history(conv))["messages"]
    assert [m["from"] for m in stored if m["kind"] == "text"] == [alice.user_id]


async def test_non_members_cannot_ack_read_recall_type_or_read_receipts(
    server: RunningServer, make_client: ClientFactory
) -> None:
    alice, bob, mallory = await make_client(), await make_client(), await make_client()
    conv = await make_friends(alice, bob)
    sent = await alice.send(conv, "private")
    assert sent is not None
    ws = await authed(server, mallory.access_token)
    probes: list[dict[str, Any]] = [
        {"type": "message.ack", "conv": conv, "seq": sent["seq"]},
        {"type": "message.read", "conv": conv, "seq": sent["seq"]},
        {"type": "typing", "conv": conv},
        {"type": "message.recall", "id": sent["id"]},
    ]
    for probe in probes:
        await ws.send(orjson.dumps(probe).decode())
        err = await next_of(ws, "error")
        assert err["code"] in ("not_member", "not_found"), (probe, err)
    await ws.close()
    for path in (f"/api/conversations/{conv}/receipts", f"/api/conversations/{conv}/messages"):
        with pytest.raises(ClientError) as info:
            await mallory.request("GET", path)
        assert info.value.status == 403 and info.value.code == "not_member"
    # nothing moved: bob's marks are untouched by mallory's frames
    marks = (await alice.request("GET", f"/api/conversations/{conv}/receipts"))["marks"]
    assert mallory.user_id not in marks


async def test_removed_member_gets_nothing_new(make_client: ClientFactory) -> None:
    owner, member = await make_client(), await make_client()
    await owner.befriend(member)
    group = await owner.create_group("closing", [member.user_id])
    conv, gid = group["conv"], group["id"]
    await owner.send(conv, "before removal")
    await owner.request("DELETE", f"/api/groups/{gid}/members/{member.user_id}")
    secret_file = await owner.upload(b"after removal notes\n", "after.txt")
    await owner.send(conv, "after removal")
    await owner.send(conv, kind="file", file=secret_file["id"])
    # not pushed, not synced, not in history, file not downloadable
    got: list[dict[str, Any]] = []
    with contextlib.suppress(TimeoutError):
        while True:
            got.append(await member.next_message(timeout=1.0))
    assert not [m for m in got if m["kind"] in ("text", "file") and "after" in str(m["body"])]
    with pytest.raises(ClientError) as info:
        await member.history(conv)
    assert info.value.code == "not_member"
    with pytest.raises(ClientError) as info:
        await member.request("GET", f"/api/files/{secret_file['id']}")
    assert info.value.status == 404
    with pytest.raises(SendError) as sinfo:
        await member.send(conv, "still here?")
    assert sinfo.value.code == "not_member"


# ---------------------------------------------------------------------------------------------- uploads


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("pic.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'),
        ("page.html", b"<!doctype html><html><script>alert(document.cookie)</script></html>"),
    ],
)
async def test_active_content_is_never_served_inline(
    server: RunningServer, make_client: ClientFactory, name: str, data: bytes
) -> None:
    c = await make_client(connect=False)
    meta = await c.upload(data, "../../" + name)
    assert meta["mime"] == "text/plain"  # detected from the bytes; the name and the client's type are ignored
    async with httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {c.access_token}"}
    ) as h:
        r = await h.get(f"/api/files/{meta['id']}")
    assert r.content == data
    assert r.headers["content-type"].startswith("text/plain")
    assert r.headers["content-disposition"].startswith("attachment")
    assert r.headers["x-content-type-options"] == "nosniff"
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "sandbox" in csp
    # stored under a generated key, never under the user's name (no path traversal)
    root = Path(server.node.settings.data_path) / "files"
    stored = [p for p in root.rglob("*") if p.is_file()]
    assert stored and all(name not in p.name and p.resolve().is_relative_to(root.resolve()) for p in stored)


async def test_upload_size_is_enforced_while_streaming(
    start_server: ServerFactory, clients: list[WsimClient]
) -> None:
    limit = 200_000
    srv = await start_server({"limits": {"upload_max_bytes": limit}})
    c = WsimClient(srv.url)
    clients.append(c)
    await c.register("streamer", "password-123")
    host, port = srv.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = b'--B\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n\r\n'
    declared = 50 * limit  # announced, never sent: the server must answer before it has it all
    writer.write(
        (
            f"POST /api/files HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {c.access_token}\r\n"
            f"Content-Type: multipart/form-data; boundary=B\r\nContent-Length: {declared}\r\n\r\n"
        ).encode()
        + head
    )
    sent = 0
    answer = b""
    while (
        sent < 4 * limit and not answer
    ):  # send a bit more than the limit, in chunks, watching for an answer
        writer.write(b"a" * 16_384)
        sent += 16_384
        await writer.drain()
        with contextlib.suppress(TimeoutError):
            answer = await asyncio.wait_for(reader.read(4096), 0.02)
    if not answer:
        answer = await asyncio.wait_for(reader.read(4096), 5)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"too_large"' in answer
    assert sent < declared
    writer.close()
    tmp = Path(srv.node.settings.data_path) / "files"
    await eventually(lambda: not [p for p in tmp.rglob("*") if p.is_file()], timeout=5)


async def test_http_transports_take_tokens_only_from_the_header_and_allow_no_cross_origin(
    start_server: ServerFactory, clients: list[WsimClient]
) -> None:
    """Polling has no Origin check because it needs none: the token travels only in ``Authorization`` (never a
    cookie or the URL), so a foreign page can neither ride a victim's session nor read answers (no CORS)."""
    srv = await start_server({"strategies": {"transports": [{"kind": "websocket"}, {"kind": "long_poll"}]}})
    c = WsimClient(srv.url)
    clients.append(c)
    await c.register("poller", "password-123")
    async with httpx.AsyncClient(base_url=srv.url) as http:
        preflight = await http.options(
            "/api/poll/long",
            headers={
                "Origin": "http://evil.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert "access-control-allow-origin" not in preflight.headers
        for where in (
            {"params": {"access_token": c.access_token}},
            {"headers": {"Cookie": f"token={c.access_token}"}},
        ):
            r = await http.post("/api/poll/long", json={"device": "d1", "wait": False}, **where)  # type: ignore[arg-type]
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
            r = await http.get("/api/users/me", **where)  # type: ignore[arg-type]
            assert r.status_code == 401
        ok = await http.post(
            "/api/poll/long",
            json={"device": "d1", "wait": False},
            headers={"Authorization": f"Bearer {c.access_token}"},
        )
        assert ok.status_code == 200 and "access-control-allow-origin" not in ok.headers
