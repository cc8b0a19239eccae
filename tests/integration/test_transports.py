"""Every transport passes the same conversation scenario as the native WebSocket, against one real server that
serves all of them (and the real Mosquitto broker for MQTT): send, deliver, ack, read, offline then resume; and
users on different transports talk to each other."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from core.sdk import WsimClient
from experiments.transports.clients import TRANSPORT_KINDS, Account, Device, make_device, server_transports
from strategies import transport
from tests.conftest import ServerFactory
from tests.integration.conftest import AccountFactory
from tests.support.helpers import texts
from tests.support.server import RunningServer
from tests.support.services import namespace, require_service


@pytest.fixture
async def all_transports_server(start_server: ServerFactory) -> RunningServer:
    require_service("mosquitto")
    return await start_server({"strategies": {"transports": server_transports(namespace("wsimt"))}})


@pytest.fixture
def accounts(
    all_transports_server: RunningServer, register_accounts: AccountFactory, devices: list[Device]
) -> Any:
    def device(kind: str, account: Account, **kw: Any) -> Device:
        d = make_device(kind, all_transports_server.url, account, short_interval_s=0.05, **kw)
        devices.append(d)
        return d

    async def make(n: int) -> list[tuple[WsimClient, Account]]:
        return await register_accounts(all_transports_server.url, n, "tr")

    return make, device


@pytest.mark.parametrize("kind", transport.REGISTRY.names())  # a newly registered transport is tested at once
async def test_conversation_scenario(kind: str, accounts: Any) -> None:
    make, device = accounts
    (alice_c, alice_acc), (bob_c, bob_acc) = await make(2)
    await alice_c.befriend(bob_c)
    conv = WsimClient.direct_conv(alice_c.user_id, bob_c.user_id)

    alice = device("websocket", alice_acc)
    bob = device(kind, bob_acc)
    await alice.open()
    await bob.open()
    alice.discard_messages()  # friend.accepted, released by the first sync
    assert bob.auth_ok is not None and str(bob.auth_ok["user"]) == bob_acc.user_id
    history = await bob.sync({})
    assert [m["kind"] for m in history] == ["system"]  # friend.accepted
    cursor = history[-1]["seq"]
    assert (await bob.next_message())["seq"] == cursor  # released once, by open()'s sync

    # send -> sent (stored) -> delivered to the other transport -> acked -> receipt
    sent = await alice.send(conv, "hello over " + kind)
    assert sent["seq"] == cursor + 1
    got = await bob.next_message()
    assert got["body"]["text"] == "hello over " + kind and got["seq"] == sent["seq"]
    delivered = await alice.next_event("receipt", lambda e: (e.get("delivered") or 0) >= sent["seq"])
    assert delivered["user"] == bob_acc.user_id
    # read -> receipt
    await bob.read(conv, sent["seq"])
    read = await alice.next_event("receipt", lambda e: e.get("read") == sent["seq"])
    assert read["user"] == bob_acc.user_id
    # and back the other way
    back = await bob.send(conv, "hi from " + kind)
    assert (await alice.next_message())["body"]["text"] == "hi from " + kind
    cursor = back["seq"]

    # offline, then resume from the session's cursors: everything missed, in order, nothing twice
    await bob.close()
    missed = [await alice.send(conv, f"while away {i}") for i in range(3)]
    assert [m["seq"] for m in missed] == [cursor + 1, cursor + 2, cursor + 3]
    await bob.open()
    synced = await bob.sync({conv: cursor})  # asked again: the server answers, the session drops repeats
    assert texts(synced) == [f"while away {i}" for i in range(3)]
    assert [m["seq"] for m in synced] == [cursor + 1, cursor + 2, cursor + 3]
    await alice.send(conv, "marker")  # a wrongly repeated push would reach the device before it
    released = [await bob.next_message() for _ in range(4)]
    assert texts(released) == [*(f"while away {i}" for i in range(3)), "marker"]
    assert bob.messages.empty()
    marks = (await bob_c.request("GET", f"/api/conversations/{conv}/receipts"))["marks"]
    assert marks[bob_acc.user_id]["read"] >= sent["seq"]


async def test_every_transport_in_one_group(accounts: Any) -> None:
    make, device = accounts
    people = await make(len(TRANSPORT_KINDS))
    owner_c = people[0][0]
    for c, _ in people[1:]:
        await owner_c.befriend(c)
    group = await owner_c.create_group("mixed", [c.user_id for c, _ in people[1:]])
    conv = group["conv"]
    devices = [device(kind, acc) for kind, (_, acc) in zip(TRANSPORT_KINDS, people, strict=True)]
    await asyncio.gather(*(d.open() for d in devices))
    for d in devices:
        d.discard_messages()  # the group's system messages, released by the first sync
    for d, kind in zip(devices, TRANSPORT_KINDS, strict=True):
        await d.send(conv, f"from {kind}")
    for d, kind in zip(devices, TRANSPORT_KINDS, strict=True):
        got = [await d.next_message(timeout=15) for _ in range(len(TRANSPORT_KINDS) - 1)]
        assert sorted(texts(got)) == sorted(f"from {k}" for k in TRANSPORT_KINDS if k != kind)
        seqs = [m["seq"] for m in got]
        assert seqs == sorted(seqs)


async def test_transports_are_listed(all_transports_server: RunningServer) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=all_transports_server.url) as http:
        body = (await http.get("/api/transports")).json()
    assert [t["kind"] for t in body["transports"]] == list(TRANSPORT_KINDS)


@pytest.mark.parametrize("kind", transport.REGISTRY.names())
async def test_reply_quote_over_every_transport(kind: str, accounts: Any) -> None:
    """``reply_to`` goes up and ``quote`` comes down the same on every transport (docs/protocol.md)."""
    make, device = accounts
    (alice_c, alice_acc), (bob_c, bob_acc) = await make(2)
    await alice_c.befriend(bob_c)
    conv = WsimClient.direct_conv(alice_c.user_id, bob_c.user_id)
    alice, bob = device("websocket", alice_acc), device(kind, bob_acc)
    await alice.open()
    await bob.open()
    alice.discard_messages()
    await bob.next_message()  # friend.accepted, released by the first sync
    question = await alice.send(conv, "原话 over " + kind)
    assert (await bob.next_message())["seq"] == question["seq"]
    answer = await bob.send(conv, "回复 over " + kind, reply_to=question["seq"])
    got = await alice.next_message()
    assert got["seq"] == answer["seq"] and got["body"]["reply_to"] == question["seq"]
    assert got["quote"]["text"] == "原话 over " + kind and got["quote"]["from"] == alice_acc.user_id
    again = await alice.send(conv, "再回复", reply_to=answer["seq"])
    down = await bob.next_message()
    assert down["seq"] == again["seq"] and down["quote"]["text"] == "回复 over " + kind
