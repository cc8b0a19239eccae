"""Accounts and socket authentication against a real server."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from core.sdk import ClientError, WsimClient
from tests.conftest import ClientFactory, ServerFactory
from tests.support.server import RunningServer, node_fake_clock


def ws_url(server: RunningServer) -> str:
    return server.url.replace("http", "ws") + "/ws"


async def test_register_login_refresh_rotation_and_reuse_detection(start_server: ServerFactory) -> None:
    server = await start_server({"auth": {"refresh_reuse_grace_s": 0}})
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.post("/api/auth/register", json={"username": "Rotator", "password": "password-123"})
        assert r.status_code == 201
        body = r.json()
        assert body["user"]["username"] == "rotator" and body["token_type"] == "Bearer"
        dup = await http.post("/api/auth/register", json={"username": "rotator", "password": "password-123"})
        assert dup.status_code == 409 and dup.json()["error"]["code"] == "already_exists"
        first = body["refresh_token"]
        r2 = await http.post("/api/auth/refresh", json={"refresh_token": first})
        assert r2.status_code == 200
        second = r2.json()["refresh_token"]
        assert second != first
        # the first token again: reuse -> the whole session is revoked
        r3 = await http.post("/api/auth/refresh", json={"refresh_token": first})
        assert r3.status_code == 401 and r3.json()["error"]["code"] == "token_reused"
        r4 = await http.post("/api/auth/refresh", json={"refresh_token": second})
        assert r4.status_code == 401
        me = await http.get("/api/users/me", headers={"Authorization": f"Bearer {r2.json()['access_token']}"})
        assert me.status_code == 401


async def test_a_second_tab_refreshing_with_the_same_token_at_once_keeps_the_session(
    server: RunningServer,
) -> None:
    """Within the grace period a reused refresh token is a concurrent tab: both get working tokens of one session."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.post("/api/auth/register", json={"username": "twotabs", "password": "password-123"})
        first = r.json()["refresh_token"]
        tab1, tab2 = await asyncio.gather(
            *(http.post("/api/auth/refresh", json={"refresh_token": first}) for _ in range(2))
        )
        assert (tab1.status_code, tab2.status_code) == (200, 200)
        assert tab1.json()["session"] == tab2.json()["session"] == r.json()["session"]
        assert tab1.json()["refresh_token"] != tab2.json()["refresh_token"]
        for tab in (tab1, tab2):
            me = await http.get(
                "/api/users/me", headers={"Authorization": f"Bearer {tab.json()['access_token']}"}
            )
            assert me.status_code == 200
            nxt = await http.post("/api/auth/refresh", json={"refresh_token": tab.json()["refresh_token"]})
            assert nxt.status_code == 200


async def test_wrong_password_and_unknown_user_answer_alike_then_429(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        await http.post("/api/auth/register", json={"username": "victim", "password": "password-123"})
        a = await http.post("/api/auth/login", json={"username": "victim", "password": "wrong-pass"})
        b = await http.post("/api/auth/login", json={"username": "nobody-here", "password": "wrong-pass"})
        assert a.status_code == b.status_code == 401
        assert (
            a.json()
            == b.json()
            == {"error": {"code": "bad_credentials", "message": "wrong username or password"}}
        )
        codes = []
        for _ in range(12):
            r = await http.post("/api/auth/login", json={"username": "victim", "password": "still-wrong"})
            codes.append(r.status_code)
        assert 429 in codes
        limited = await http.post("/api/auth/login", json={"username": "victim", "password": "password-123"})
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1


async def test_jwt_algorithm_is_pinned(server: RunningServer) -> None:
    import jwt

    forged = jwt.encode(
        {"sub": "1", "sid": "x", "typ": "access", "iat": 0, "exp": 2**40}, key="", algorithm="none"
    )
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.get("/api/users/me", headers={"Authorization": f"Bearer {forged}"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


async def test_logout_closes_sockets_of_that_session(make_client: ClientFactory) -> None:
    alice = await make_client()
    other = await make_client(login_as=alice)  # a second login session of the same user
    await alice.logout()
    for _ in range(200):
        if alice.last_close is not None:
            break
        await asyncio.sleep(0.02)
    assert alice.last_close is not None and alice.last_close[0] == 4010
    assert alice.closed_for_good
    with pytest.raises(ClientError) as info:
        await alice.request("GET", "/api/users/me")
    assert info.value.status == 401
    assert other.connected.is_set()  # the other session is untouched
    await other.request("GET", "/api/users/me")


async def test_origin_allowlist(server: RunningServer) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(ws_url(server), origin="http://evil.example"):  # type: ignore[arg-type]
            pass
    assert info.value.response.status_code == 403
    async with connect(ws_url(server), origin="http://testserver"):  # type: ignore[arg-type]
        pass


async def test_socket_auth_failures(start_server: ServerFactory, clients: list[WsimClient]) -> None:
    clock = node_fake_clock()
    srv = await start_server({"limits": {"auth_timeout_s": 10, "max_connections_per_user": 2}}, clock=clock)
    url = ws_url(srv)
    async with connect(url) as raw:  # no auth frame at all
        with pytest.raises(ConnectionClosed):
            for _ in range(100):  # again until closed: the node may not have armed this socket's deadline yet
                clock.advance(11)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(raw.recv(), 0.1)
        assert raw.close_code == 4001
    async with connect(url) as raw:  # a bad token
        await raw.send('{"type":"auth","token":"garbage"}')
        err = orjson.loads(await raw.recv())
        assert err["type"] == "error" and err["code"] == "unauthorized"
        with pytest.raises(ConnectionClosed):
            await raw.recv()
        assert raw.close_code == 4001
    c = WsimClient(srv.url)
    clients.append(c)
    await c.register("many_sockets", "password-123")
    token = orjson.dumps({"type": "auth", "token": c.access_token}).decode()
    async with connect(url) as s1, connect(url) as s2, connect(url) as s3:
        for s in (s1, s2):
            await s.send(token)
            assert orjson.loads(await s.recv())["type"] == "auth.ok"
        await s3.send(token)
        err = orjson.loads(await s3.recv())
        assert err["type"] == "error"
        with pytest.raises(ConnectionClosed):
            await s3.recv()
        assert s3.close_code == 4009
    # bearer token in the handshake header instead of a first frame
    async with connect(url, additional_headers={"Authorization": f"Bearer {c.access_token}"}) as s:
        assert orjson.loads(await s.recv())["type"] == "auth.ok"


async def test_same_device_reconnecting_replaces_the_old_socket(
    server: RunningServer, make_client: ClientFactory
) -> None:
    c = await make_client(connect=False)
    frame = orjson.dumps({"type": "auth", "token": c.access_token, "device": "phone"}).decode()
    async with connect(ws_url(server)) as old:
        await old.send(frame)
        assert orjson.loads(await old.recv())["type"] == "auth.ok"
        async with connect(ws_url(server)) as new:
            await new.send(frame)
            assert orjson.loads(await new.recv())["type"] == "auth.ok"
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(old.recv(), 3)
            assert old.close_code == 4011


async def test_token_expiry_on_open_socket_and_renewal(
    start_server: ServerFactory, clients: list[WsimClient]
) -> None:
    """On fake time: the node's clock issues and checks tokens and arms the connection's expiry timer."""
    clock = node_fake_clock()
    srv = await start_server({"auth": {"access_ttl_s": 20}}, clock=clock)
    c = WsimClient(srv.url)
    clients.append(c)
    await c.register("expiring", "password-123")
    async with connect(ws_url(srv)) as raw:
        await raw.send(orjson.dumps({"type": "auth", "token": c.access_token}).decode())
        ok = orjson.loads(await raw.recv())
        assert ok["type"] == "auth.ok"
        first_expiry_ms = ok["token_expires"]
        clock.advance(10)
        await c.refresh()
        assert c.access_expires_ms == first_expiry_ms + 10_000
        await raw.send(orjson.dumps({"type": "auth.renew", "token": c.access_token}).decode())
        # the renewal is handled once the socket answers a later frame (frames of a connection are in order)
        await raw.send('{"type":"ping"}')
        assert orjson.loads(await raw.recv())["type"] == "pong"
        clock.advance(15)  # past the first token's expiry: the renewed one holds
        await raw.send('{"type":"ping"}')
        assert orjson.loads(await raw.recv())["type"] == "pong"
        clock.advance(10)  # past the renewed token's expiry
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(raw.recv(), 10)
        assert raw.close_code == 4003
