"""The chat protocol against a real server and real sockets, driven through the SDK (and raw frames where the
SDK would hide what is tested)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect

from core.models import Message
from core.sdk import SendError, WsimClient
from tests.conftest import ClientFactory, ServerFactory, UrlClientFactory
from tests.support.helpers import collect, eventually, make_friends, texts
from tests.support.server import RunningServer, node_fake_clock


async def test_direct_chat_both_ways_in_order(make_client: ClientFactory) -> None:
    alice, bob = await make_client(), await make_client()
    conv = await make_friends(alice, bob)
    n = 40
    await asyncio.gather(
        *(alice.send(conv, f"a{i}") for i in range(n)), *(bob.send(conv, f"b{i}") for i in range(n))
    )
    got_b = await collect(bob, n)
    got_a = await collect(alice, n)
    assert sorted(texts(got_b), key=lambda t: int(t[1:])) == [f"a{i}" for i in range(n)]
    assert sorted(texts(got_a), key=lambda t: int(t[1:])) == [f"b{i}" for i in range(n)]
    for got in (got_a, got_b):
        seqs = [m["seq"] for m in got]
        assert seqs == sorted(seqs) and len(set(seqs)) == n
    # all 80 + the system message have distinct, gap-free seqs
    page = await alice.history(conv, limit=200)
    assert [m["seq"] for m in page["messages"]] == list(range(1, 2 * n + 2))


async def test_group_of_fifty_exchange(make_client: ClientFactory) -> None:
    owner = await make_client()
    members = await asyncio.gather(*(make_client() for _ in range(50)))
    for m in members:
        await owner.befriend(m)
    group = await owner.create_group("fifty", [m.user_id for m in members])
    conv = group["conv"]
    assert group["member_count"] == 51
    everyone = [owner, *members]
    # drain friendship and group-creation system messages
    for c in everyone:
        while True:
            msg = await c.next_message()
            if msg["conv"] == conv:
                assert msg["kind"] == "system" and msg["body"]["event"] == "group.created"
                break
    senders = [owner, *members[:4]]
    for rnd in range(3):
        await asyncio.gather(*(s.send(conv, f"r{rnd}-{i}") for i, s in enumerate(senders)))
    total = 3 * len(senders)
    for c in everyone:
        mine = sum(1 for s in senders if s is c) * 3
        got = await collect(c, total - mine)
        seqs = [m["seq"] for m in got]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert all(m["conv"] == conv for m in got)


async def test_offline_device_syncs_everything_in_order_with_paging(make_client: ClientFactory) -> None:
    alice, bob = await make_client(), await make_client()
    conv = await make_friends(alice, bob)
    await bob.disconnect()
    dropped_before = bob.stats.duplicates_dropped
    n = 260  # more than one sync page (200)
    for i in range(n):
        await alice.send(conv, f"m{i}")
    await bob.connect()
    got = await collect(bob, n)
    assert texts(got) == [f"m{i}" for i in range(n)]
    assert bob.stats.duplicates_dropped == dropped_before  # paging neither repeats nor skips


async def test_new_device_gets_bounded_recent_history(make_client: ClientFactory) -> None:
    alice, bob = await make_client(), await make_client()
    conv = await make_friends(alice, bob)
    for i in range(70):
        await alice.send(conv, f"m{i}")
    fresh = await make_client(login_as=bob)
    got = await collect(fresh, 50)  # sync.recent_messages default
    assert texts(got) == [f"m{i}" for i in range(20, 70)]
    assert fresh.ordering.cursor(conv) == 71


async def test_multi_device_fan_out(make_client: ClientFactory) -> None:
    a1 = await make_client()
    a2 = await make_client(login_as=a1)
    bob = await make_client()
    conv = await make_friends(a1, bob)
    await a2.next_message()  # a2 also got the friendship system message
    await bob.send(conv, "to both devices")
    assert (await a1.next_message())["body"]["text"] == "to both devices"
    assert (await a2.next_message())["body"]["text"] == "to both devices"
    seen: list[dict[str, Any]] = []
    a1.listeners.append(seen.append)
    await a1.send(conv, "from device one")
    mine = await a2.next_message()
    assert mine["body"]["text"] == "from device one" and mine["device"] == a1.device
    assert (await bob.next_message())["body"]["text"] == "from device one"
    # the sending device does not get its own message back: an echo is pushed before the ack, so before a
    # message sent after the ack, on the same connection
    await bob.send(conv, "marker")
    assert (await a1.next_message())["body"]["text"] == "marker"
    assert [f["msg"]["body"]["text"] for f in seen if f["type"] == "message.new"] == ["marker"]


async def test_delivered_and_read_receipts_direct(make_client: ClientFactory) -> None:
    alice, bob = await make_client(), await make_client()
    conv = await make_friends(alice, bob)
    ack = await alice.send(conv, "receipt me")
    assert ack is not None
    await bob.next_message()
    delivered = await alice.next_event("receipt", where=lambda e: e.get("delivered", 0) >= ack["seq"])
    assert delivered["user"] == bob.user_id and delivered["conv"] == conv
    await bob.read(conv, ack["seq"])
    read = await alice.next_event("receipt", where=lambda e: e.get("read") is not None)
    assert read["read"] == ack["seq"]
    convs = (await bob.request("GET", "/api/conversations"))["conversations"]
    assert next(c for c in convs if c["conv"] == conv)["unread"] == 0


async def test_group_read_marks_and_counts(make_client: ClientFactory) -> None:
    owner, m1, m2 = await make_client(), await make_client(), await make_client()
    await owner.befriend(m1)
    await owner.befriend(m2)
    group = await owner.create_group("trio", [m1.user_id, m2.user_id])
    conv = group["conv"]
    ack = await owner.send(conv, "read me")
    assert ack is not None
    await eventually(lambda: m1.ordering.cursor(conv) == ack["seq"])
    await m1.read(conv, ack["seq"])
    ev = await owner.next_event("receipt", where=lambda e: e["conv"] == conv and e.get("read"))
    assert ev["user"] == m1.user_id
    marks = (await owner.request("GET", f"/api/conversations/{conv}/receipts"))["marks"]
    readers = [u for u, mk in marks.items() if mk["read"] >= ack["seq"]]
    assert sorted(readers) == sorted([owner.user_id, m1.user_id])  # read count 1 besides the sender


async def test_recall_reaches_online_and_offline_devices(make_client: ClientFactory) -> None:
    alice, bob = await make_client(), await make_client()
    conv = await make_friends(alice, bob)
    bob_laptop = await make_client(login_as=bob)
    await bob_laptop.next_message()
    await bob_laptop.disconnect()
    ack = await alice.send(conv, "oops")
    assert ack is not None
    assert (await bob.next_message())["body"]["text"] == "oops"
    await alice.recall(ack["id"])
    recall = await bob.next_message()
    assert recall["kind"] == "recall" and recall["body"]["id"] == ack["id"]
    await bob_laptop.connect()
    got = await collect(bob_laptop, 2)
    assert [m["kind"] for m in got] == ["text", "recall"]
    assert got[0]["recalled"] is True and got[0]["body"] == {}
    page = await bob.history(conv)
    original = next(m for m in page["messages"] if m["id"] == ack["id"])
    assert original["recalled"] and original["body"] == {}
    # recalling someone else's message is refused
    ack2 = await alice.send(conv, "mine")
    assert ack2 is not None
    await bob.recall(ack2["id"])
    err = await bob.next_event("error")
    assert err["code"] == "forbidden"


async def test_recall_window(start_server: ServerFactory, client_on: UrlClientFactory) -> None:
    clock = node_fake_clock()
    srv = await start_server({"limits": {"recall_window_s": 20}}, clock=clock)
    alice, bob = await client_on(srv.url), await client_on(srv.url, connect=False)
    conv = await make_friends(alice, bob)
    ack = await alice.send(conv, "too late")
    assert ack is not None
    clock.advance(21)  # less than the heartbeat's 60 s, which would reap alice's silent (on fake time) socket
    await alice.recall(ack["id"])
    assert (await alice.next_event("error"))["code"] == "recall_window"


async def test_idempotent_resend_returns_original_ack(make_client: ClientFactory) -> None:
    alice, bob = await make_client(), await make_client()
    conv = await make_friends(alice, bob)
    first = await alice.send(conv, "once", cmid="fixed-cmid-1")
    again = await alice.send(conv, "once", cmid="fixed-cmid-1")
    assert first is not None and again is not None
    assert (again["id"], again["seq"], again["duplicate"]) == (first["id"], first["seq"], True)
    with pytest.raises(SendError) as info:
        await alice.send(conv, "a different body", cmid="fixed-cmid-1")
    assert info.value.code == "conflict"
    await alice.send(conv, "marker")  # a second push of "once" would come before it
    got = await collect(bob, 2)
    assert texts(got) == ["once", "marker"]
    page = await bob.history(conv)
    assert [m["body"].get("text") for m in page["messages"]].count("once") == 1


async def test_resend_after_dropped_connection_no_loss_no_duplicate(make_client: ClientFactory) -> None:
    alice, bob = await make_client(backoff_base_s=0.05), await make_client()
    conv = await make_friends(alice, bob)
    sends = []
    for i in range(30):
        sends.append(asyncio.create_task(alice.send(conv, f"d{i}", timeout=30)))
        if i % 5 == 4:
            await asyncio.sleep(0)  # let the frame go out (or not) before the link dies
            await alice.drop()
    acks = await asyncio.gather(*sends)
    assert len({a["id"] for a in acks if a}) == 30
    got = await collect(bob, 30)
    assert sorted(texts(got), key=lambda t: int(t[1:])) == [f"d{i}" for i in range(30)]
    page = await bob.history(conv, limit=100)
    assert len(page["messages"]) == 31  # 30 + the friendship system message: nothing stored twice
    assert alice.stats.reconnects >= 1


async def test_server_retries_unacked_push_then_dead_letters(
    start_server: ServerFactory, client_on: UrlClientFactory
) -> None:
    clock = node_fake_clock()  # retries 1 s and 2 s after the push, then the dead letter 4 s later
    srv = await start_server(
        {"strategies": {"retry": {"kind": "exponential", "base_s": 1, "max_retries": 2}}}, clock=clock
    )
    admin = await client_on(srv.url, "admin", connect=False)
    alice, bob = await client_on(srv.url), await client_on(srv.url, connect=False)
    conv = await make_friends(alice, bob)
    # alice acks the friendship message on the real clock: before fake time moves, or it is dead-lettered too
    alice_links = srv.node.hub.links(int(alice.user_id))
    await eventually(lambda: not any(link.session.tracker.pending_count() for link in alice_links))
    ws_url = srv.url.replace("http", "ws") + "/ws"
    async with connect(ws_url) as raw:  # a device that never acknowledges
        await raw.send(orjson.dumps({"type": "auth", "token": bob.access_token, "device": "mute"}).decode())
        assert orjson.loads(await raw.recv())["type"] == "auth.ok"
        ack = await alice.send(conv, "are you there?")
        assert ack is not None
        pushes = 0
        while pushes < 3:
            frame = orjson.loads(await asyncio.wait_for(raw.recv(), 5))
            if frame["type"] == "message.new" and frame["msg"]["id"] == ack["id"]:
                pushes += 1
                clock.advance(5)  # past this push's retry deadline (the third: past the dead-letter one)

        async def dead_letters() -> dict[str, object]:
            return await admin.request("GET", "/api/admin/dead-letters")  # type: ignore[no-any-return]

        for _ in range(100):
            dl = await dead_letters()
            # the endpoint lists, then counts: a letter committed in between shows in the count only
            if dl["total"] and dl["items"]:
                break
            await asyncio.sleep(0.05)
        assert dl["total"] == 1, dl
        item = dl["items"][0]  # type: ignore[index]
        assert item["msg_id"] == ack["id"] and item["device"] == "mute" and item["attempts"] == 3
    # still available through sync
    page = await bob.history(conv)
    assert any(m["id"] == ack["id"] for m in page["messages"])


async def test_blocked_user_is_refused(make_client: ClientFactory) -> None:
    alice, bob = await make_client(), await make_client()
    conv = await make_friends(alice, bob)
    await bob.request("PUT", f"/api/blocks/{alice.user_id}")
    with pytest.raises(SendError) as info:
        await alice.send(conv, "hello?")
    assert info.value.code == "blocked"
    with pytest.raises(SendError):
        await bob.send(conv, "I blocked you")
    await bob.request("DELETE", f"/api/blocks/{alice.user_id}")
    assert await alice.send(conv, "back") is not None


async def test_non_members_and_strangers_are_refused(make_client: ClientFactory) -> None:
    alice, bob, carol = await make_client(), await make_client(), await make_client()
    conv = await make_friends(alice, bob)
    group = await alice.create_group("two", [bob.user_id])
    with pytest.raises(SendError) as info:
        await carol.send(group["conv"], "let me in")
    assert info.value.code == "not_member"
    with pytest.raises(SendError) as info:
        await carol.send(conv, "eavesdrop")
    assert info.value.code == "not_member"
    with pytest.raises(SendError) as info:
        await carol.send(carol.direct_conv(carol.user_id, alice.user_id), "hi stranger")
    assert info.value.code == "not_friends"
    with pytest.raises(Exception, match="not_member"):
        await carol.history(group["conv"])


async def test_typing_and_presence(make_client: ClientFactory) -> None:
    alice = await make_client()
    bob = await make_client(connect=False)
    conv = await make_friends(alice, bob)
    await bob.connect()
    online = await alice.next_event("presence", where=lambda e: e["user"] == bob.user_id)
    assert online["online"] is True and online["devices"] == 1
    await bob.typing(conv)
    typing = await alice.next_event("typing")
    assert typing == {"type": "typing", "conv": conv, "user": bob.user_id}
    friends = (await alice.request("GET", "/api/friends"))["friends"]
    assert friends[0]["online"] is True
    await bob.disconnect()
    offline = await alice.next_event("presence", where=lambda e: e["user"] == bob.user_id)
    assert offline["online"] is False


async def test_bad_frames_get_error_frames_and_connection_stays(
    server: RunningServer, make_client: ClientFactory
) -> None:
    alice = await make_client(connect=False)
    async with connect(server.url.replace("http", "ws") + "/ws") as raw:
        await raw.send(orjson.dumps({"type": "auth", "token": alice.access_token}).decode())
        assert orjson.loads(await raw.recv())["type"] == "auth.ok"
        for bad in ("{", '{"type":"teleport"}', '{"type":"message.send","cmid":"x","conv":"nope"}'):
            await raw.send(bad)
            err = orjson.loads(await raw.recv())
            assert err["type"] == "error" and err["code"] in ("bad_frame", "invalid")
        await raw.send('{"type":"ping","ts":5}')
        pong = orjson.loads(await raw.recv())
        assert pong["type"] == "pong" and pong["ts"] == 5


async def test_heartbeat_reaping(start_server: ServerFactory, clients: list[WsimClient]) -> None:
    clock = node_fake_clock()
    srv = await start_server({"heartbeat": {"interval_s": 30, "missed_beats": 2}}, clock=clock)
    c = WsimClient(srv.url)
    clients.append(c)
    await c.register("silent", "password-123")
    async with connect(srv.url.replace("http", "ws") + "/ws") as raw:
        await raw.send(orjson.dumps({"type": "auth", "token": c.access_token}).decode())
        assert orjson.loads(await raw.recv())["type"] == "auth.ok"
        clock.advance(59)  # one beat short of two missed: still open
        await raw.send('{"type":"ping","ts":1}')
        assert orjson.loads(await raw.recv())["type"] == "pong"
        clock.advance(61)
        with pytest.raises(Exception):  # noqa: B017 - ConnectionClosed subclass varies
            while True:
                await asyncio.wait_for(raw.recv(), 10)
        assert raw.close_code == 4002


async def _group_of(owner: WsimClient, *others: WsimClient) -> tuple[str, str]:
    for o in others:
        await make_friends(owner, o)
    group = await owner.create_group("race", [o.user_id for o in others])
    for c in (owner, *others):
        assert (await c.next_message())["body"]["event"] == "group.created"
    return group["conv"], group["conv"].split(":", 1)[1]


def _hold(
    monkeypatch: pytest.MonkeyPatch, target: object, name: str, when: object
) -> tuple[asyncio.Event, asyncio.Event]:
    """Stop the send of the message whose text is "held" inside ``target.name`` until released."""
    reached, release = asyncio.Event(), asyncio.Event()
    original = getattr(target, name)

    async def held(*args: object) -> object:
        if when == "before":
            if getattr(args[1], "text", None) == "held":
                reached.set()
                await release.wait()
            return await original(*args)
        result = await original(*args)
        if getattr(args[0], "body", {}).get("text") == "held":
            reached.set()
            await release.wait()
        return result

    monkeypatch.setattr(target, name, held)
    return reached, release


async def _next_in(client: WsimClient, conv: str) -> dict[str, Any]:
    while True:
        msg = await client.next_message()
        if msg["conv"] == conv:
            return msg


async def test_member_removed_while_a_send_is_in_flight_gets_nothing_after_its_notice(
    server: RunningServer, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The send read the member list before the removal was stored, and got its seq after the removal notice
    (the fault campaign's member_removed): the removed member must not be pushed it, the others must."""
    owner, victim, other = await make_client(), await make_client(), await make_client()
    conv, gid = await _group_of(owner, victim, other)
    reached, release = _hold(monkeypatch, server.node.messaging, "_content", "before")
    sending = asyncio.create_task(owner.send(conv, "held"))
    await reached.wait()
    await owner.request("DELETE", f"/api/groups/{gid}/members/{victim.user_id}")
    notice = await _next_in(victim, conv)
    assert notice["body"]["event"] == "group.member_removed"
    release.set()
    ack = await sending
    assert ack is not None and ack["seq"] > notice["seq"]
    assert [m["body"].get("text") or m["body"]["event"] for m in await collect(other, 2)] == [
        "group.member_removed",
        "held",
    ]
    # Pushes to one device keep their order: a direct message sent after the held one was fanned out arrives
    # after anything the held one pushed to the victim.
    direct = owner.direct_conv(owner.user_id, victim.user_id)
    await owner.send(direct, "after")
    assert texts([await victim.next_message()]) == ["after"]


async def test_member_removed_after_a_message_was_stored_still_gets_it(
    server: RunningServer, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stored before the removal notice, fanned out after it: the message is inside the member's window."""
    owner, victim = await make_client(), await make_client()
    conv, gid = await _group_of(owner, victim)
    reached, release = _hold(monkeypatch, server.node.messaging.writer, "append", "after")
    sending = asyncio.create_task(owner.send(conv, "held"))
    await reached.wait()
    await owner.request("DELETE", f"/api/groups/{gid}/members/{victim.user_id}")
    release.set()
    ack = await sending
    got = {m["seq"]: m["body"].get("text") or m["body"]["event"] for m in await collect(victim, 2)}
    assert got[ack["seq"]] == "held" and sorted(got.values()) == ["group.member_removed", "held"]


async def test_member_added_while_a_send_is_in_flight_gets_it(
    server: RunningServer, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The added member reads from its notice on: a message stored after the notice is pushed to it, though the
    send read the member list before the addition."""
    owner, member, newbie = await make_client(), await make_client(), await make_client()
    conv, gid = await _group_of(owner, member)
    await make_friends(owner, newbie)
    reached, release = _hold(monkeypatch, server.node.messaging, "_content", "before")
    sending = asyncio.create_task(owner.send(conv, "held"))
    await reached.wait()
    await owner.request("POST", f"/api/groups/{gid}/members", json={"user_ids": [newbie.user_id]})
    assert (await _next_in(newbie, conv))["body"]["event"] == "group.members_added"
    fanned: list[Sequence[int]] = []
    fanout = server.node.messaging.writer.fanout

    async def watch(msg: Message, members: Sequence[int], **kw: Any) -> None:
        if msg.body.get("text") == "held":
            fanned.append(members)
        await fanout(msg, members, **kw)

    monkeypatch.setattr(server.node.messaging.writer, "fanout", watch)
    release.set()
    ack = await sending
    pushed = await _next_in(newbie, conv)
    assert (pushed["seq"], texts([pushed])) == (ack["seq"], ["held"])
    assert [int(newbie.user_id) in members for members in fanned] == [
        True
    ]  # pushed, not found by a later sync
