"""Edges of the STOMP and polling transports against a real server: lost and timed-out poll responses lose
nothing, a reaped link comes back as a new link, STOMP errors and close codes, group topics, NACK redelivery."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from core.protocol import stomp
from core.sdk import WsimClient
from experiments.transports.clients import Account, Device, StompDevice, make_device
from tests.conftest import ServerFactory, unique_name
from tests.integration.conftest import AccountFactory
from tests.support.helpers import eventually
from tests.support.server import RunningServer, node_fake_clock

TRANSPORTS = [
    {"kind": "websocket"},
    {"kind": "stomp"},
    {"kind": "long_poll", "hold_s": 5},
    {"kind": "short_poll"},
]
People = Callable[[int], Awaitable[list[tuple[WsimClient, Account]]]]


@pytest.fixture
async def srv(start_server: ServerFactory) -> RunningServer:
    # Fast retries so that NACK redelivery shows within the test.
    return await start_server(
        {"strategies": {"transports": TRANSPORTS, "retry": {"kind": "exponential", "base_s": 0.2}}}
    )


@pytest.fixture
def people(srv: RunningServer, register_accounts: AccountFactory) -> People:
    """n users, the first a friend of each of the others."""

    async def make(n: int) -> list[tuple[WsimClient, Account]]:
        out = await register_accounts(srv.url, n, "edge")
        for c, _ in out[1:]:
            await out[0][0].befriend(c)
        return out

    return make


async def _poll(http: httpx.AsyncClient, acc: Account, path: str, **body: Any) -> dict[str, Any]:
    r = await http.post(
        path, json={"device": acc.device, **body}, headers={"Authorization": f"Bearer {acc.token}"}
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


# ---------------------------------------------------------------------------------------------- polling


async def test_lost_and_timed_out_poll_responses_lose_nothing(
    srv: RunningServer, people: People, devices: list[Device]
) -> None:
    (alice_c, alice), (_, bob) = await people(2)
    conv = WsimClient.direct_conv(alice.user_id, bob.user_id)
    sender = make_device("websocket", srv.url, alice)
    devices.append(sender)
    await sender.open()
    path = "/api/poll/long"
    async with httpx.AsyncClient(base_url=srv.url) as http:
        first = await _poll(http, bob, path, wait=False)
        assert first["frames"][0]["type"] == "auth.ok"
        link, cursor = first["link"], first["cursor"]
        # A poll the client gives up on (its timeout is shorter than the hold): that response is lost.
        with pytest.raises(httpx.ReadTimeout):
            await http.post(
                path,
                json={"device": bob.device, "link": link, "cursor": cursor},
                headers={"Authorization": f"Bearer {bob.token}"},
                timeout=0.3,
            )
        sent = await sender.send(conv, "while the poll was lost")
        # The next poll carries the same cursor: it gets the message.
        got = await _poll(http, bob, path, link=link, cursor=cursor)
        news = [f for f in got["frames"] if f["type"] == "message.new"]
        assert [f["msg"]["seq"] for f in news] == [sent["seq"]]
        # Pretend that response was lost too: asking again with the same cursor gives the same frames.
        again = await _poll(http, bob, path, link=link, cursor=cursor)
        assert again["frames"] == got["frames"] and again["cursor"] == got["cursor"]
        # Delivered only counts once the cursor shows the device has it, and the ack says so.
        await _poll(
            http,
            bob,
            path,
            link=link,
            cursor=got["cursor"],
            frames=[{"type": "message.ack", "conv": conv, "seq": sent["seq"]}],
            wait=False,
        )
        receipt = await sender.next_event("receipt", lambda e: (e.get("delivered") or 0) >= sent["seq"])
        assert receipt["user"] == bob.user_id
        # Frames up to the cursor are gone; a quiet long poll comes back empty after its hold.
        empty = await _poll(http, bob, "/api/poll/short", link=link, cursor=got["cursor"])
        assert empty["link"] != link  # another transport's endpoint means another link: it starts over
    del alice_c


async def test_poll_errors_are_json(srv: RunningServer, people: People) -> None:
    [(_, acc)] = await people(1)
    async with httpx.AsyncClient(base_url=srv.url) as http:
        r = await http.post("/api/poll/short", json={"device": acc.device})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        r = await http.post(
            "/api/poll/short",
            json={"device": "bad device!"},
            headers={"Authorization": f"Bearer {acc.token}"},
        )
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid"
        # a bad frame inside a valid request is answered in the stream, like on a socket
        out = await _poll(http, acc, "/api/poll/short", frames=[{"type": "nonsense"}])
        assert any(f["type"] == "error" and f["code"] == "bad_frame" for f in out["frames"])
        # an integer beyond 64 bits (found by schemathesis: it once was a 500)
        big = {"type": "message.ack", "conv": "d:1:2", "seq": 2**70}
        out = await _poll(http, acc, "/api/poll/short", link=out["link"], cursor=out["cursor"], frames=[big])
        assert [f["code"] for f in out["frames"] if f["type"] == "error"] == ["invalid"]
        r = await http.post(
            "/api/poll/short",
            json={"device": acc.device, "frames": [{}] * 101},
            headers={"Authorization": f"Bearer {acc.token}"},
        )
        assert r.status_code == 422


async def test_reaped_poll_link_comes_back_as_a_new_link(start_server: ServerFactory) -> None:
    clock = node_fake_clock()
    srv = await start_server({"strategies": {"transports": [{"kind": "short_poll"}]}}, clock=clock)
    c = WsimClient(srv.url)
    name = unique_name("reap")
    await c.register(name, "password-123", name)
    assert c.access_token is not None
    acc = Account(c.user_id, c.access_token)
    try:
        async with httpx.AsyncClient(base_url=srv.url) as http:
            first = await _poll(http, acc, "/api/poll/short")
            assert srv.node.hub.connection_count == 1
            clock.advance(61)  # two missed 30 s heartbeats
            await eventually(lambda: srv.node.hub.connection_count == 0, timeout=5)  # reaped: silent too long
            later = await _poll(http, acc, "/api/poll/short", link=first["link"], cursor=first["cursor"])
            assert later["link"] != first["link"] and later["frames"][0]["type"] == "auth.ok"
    finally:
        await c.close()


# ---------------------------------------------------------------------------------------------- STOMP


async def _raw_stomp(srv: RunningServer) -> Any:
    from websockets.asyncio.client import connect

    ws = await connect(srv.url.replace("http", "ws") + "/stomp", subprotocols=["v12.stomp"])  # type: ignore[list-item]
    assert ws.subprotocol == "v12.stomp"
    return ws


async def _read_frames(ws: Any) -> list[stomp.StompFrame]:
    parser = stomp.StompParser()
    out: list[stomp.StompFrame] = []
    with contextlib.suppress(ConnectionClosed):  # raised for every close code but 1000/1001
        async for data in ws:
            out += [e for e in parser.feed(data) if isinstance(e, stomp.StompFrame)]
    return out


async def test_stomp_refuses_bad_credentials_and_bad_frames(srv: RunningServer, people: People) -> None:
    [(_, acc)] = await people(1)
    ws = await _raw_stomp(srv)
    await ws.send(stomp.serialize_text("CONNECT", {"accept-version": "1.2", "passcode": "not-a-token"}))
    frames = await _read_frames(ws)
    assert [f.command for f in frames] == ["ERROR"] and ws.close_code == 4001
    ws = await _raw_stomp(srv)
    await ws.send(stomp.serialize_text("SEND", {"destination": "/conv/d:1:2"}, "too early"))
    frames = await _read_frames(ws)
    assert frames[0].command == "ERROR" and "CONNECT" in (frames[0].get("message") or "")
    ws = await _raw_stomp(srv)
    await ws.send(stomp.serialize_text("CONNECT", {"accept-version": "1.0,1.1", "passcode": acc.token}))
    frames = await _read_frames(ws)
    assert frames[0].command == "ERROR" and "1.2" in (frames[0].get("message") or "")
    ws = await _raw_stomp(srv)
    await ws.send(
        stomp.serialize_text("CONNECT", {"accept-version": "1.2", "passcode": acc.token, "login": "d1"})
    )
    await ws.send(stomp.serialize_text("SEND", {"destination": "/nowhere"}, "x"))
    frames = await _read_frames(ws)
    assert [f.command for f in frames] == ["CONNECTED", "ERROR"] and ws.close_code == 4400
    assert frames[0].get("version") == "1.2" and frames[0].get("user-name") == acc.user_id
    ws = await _raw_stomp(srv)
    await ws.send(b"GARBAGE\n\n\x00")
    frames = await _read_frames(ws)
    assert frames[0].command == "ERROR" and ws.close_code == 4400


async def test_stomp_recoverable_errors_group_topics_and_nack(
    srv: RunningServer, people: People, devices: list[Device]
) -> None:
    (owner_c, owner), (_, member), (_, outsider) = await people(3)
    group = await owner_c.create_group("topic", [member.user_id])
    conv = group["conv"]
    sender = make_device("websocket", srv.url, owner)
    dev = StompDevice(srv.url, member, ack_mode="client-individual", auto_ack=False)
    devices += [sender, dev]
    await sender.open()
    await dev.open()
    dev.discard_messages()
    gid = conv.split(":")[1]
    await dev.request_receipt("SUBSCRIBE", {"id": "g", "destination": f"/topic/group.{gid}", "ack": "client"})
    sent = await sender.send(conv, "to the topic")
    msg = await dev.next_message()
    assert msg["seq"] == sent["seq"]
    # NACK: not delivered; the retry policy pushes it again (a new ack id), and an ACK then settles it
    await dev.nack(conv, sent["seq"])
    await eventually(lambda: (conv, sent["seq"]) in dev._ack_ids, timeout=5)
    retries_before = srv.node.metrics.retries.value()
    await dev.ack(conv, sent["seq"])

    async def delivered_mark() -> int:
        marks = (await owner_c.request("GET", f"/api/conversations/{conv}/receipts"))["marks"]
        return int(marks[member.user_id]["delivered"])

    for _ in range(100):
        if await delivered_mark() >= sent["seq"]:
            break
        await asyncio.sleep(0.05)
    assert await delivered_mark() >= sent["seq"]
    # an acked message is not pushed again: nothing is left pending on the device's tracker to retry
    links = srv.node.hub.links(int(member.user_id))
    await eventually(lambda: links and not any(link.session.tracker.pending_count() for link in links))
    assert srv.node.metrics.retries.value() == retries_before
    # a recoverable error arrives as a MESSAGE on the user queue; the connection stays
    bad = await dev.send(conv, "ok again")
    assert bad["seq"] == sent["seq"] + 1
    with pytest.raises(Exception, match=r"not_member|forbidden|not_friends"):
        await dev.send(WsimClient.direct_conv(member.user_id, outsider.user_id), "not friends")
    assert dev.stomp_errors == []
    # subscribing to a group one is not in is refused for that subscription only (an error on the user queue
    # whose ref is the subscription id, no RECEIPT); the connection stays (issue 14, gap 10: it was closed 4400)
    intruder = StompDevice(srv.url, outsider)
    devices.append(intruder)
    await intruder.open()
    await intruder._frame("SUBSCRIBE", {"id": "x", "destination": f"/topic/group.{gid}", "receipt": "sub-x"})
    while (refused := await asyncio.wait_for(intruder.events.get(), 5))["type"] != "error":
        pass
    assert (refused["code"], refused["ref"]) == ("not_member", "x")
    await intruder.request_receipt("SEND", {"destination": "/app/ping"}, b"{}")
    assert intruder.stomp_errors == []
