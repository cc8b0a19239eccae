"""Three nodes as real processes, over each network bus: messages and presence across nodes, kill -9 failover
with a delivery ledger, and a bus outage during traffic."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.cluster import LocalCluster
from core.sdk import WsimClient
from tests.support.brokers import private_mosquitto, private_redis, rabbitmq_close_connections
from tests.support.cluster import PASSWORD, Ledger, client, running_cluster, wait_until
from tests.support.helpers import collect, texts

pytestmark = pytest.mark.slow  # several nodes over a real bus per test

BUSES = ["redis", "rabbitmq", "mqtt"]
_names = itertools.count()


@pytest.fixture
async def clients() -> AsyncIterator[list[WsimClient]]:
    made: list[WsimClient] = []
    yield made
    for c in made:
        with contextlib.suppress(Exception):
            await c.close()


async def user(made: list[WsimClient], urls: list[str], node: int, **kwargs: Any) -> WsimClient:
    c = client(urls, node, **kwargs)
    made.append(c)
    name = f"cl{next(_names)}x{id(c) % 10_000}"
    await c.register(name, PASSWORD, name)
    return c


async def device(made: list[WsimClient], urls: list[str], node: int, of: WsimClient) -> WsimClient:
    c = client(urls, node)
    made.append(c)
    assert of.user is not None
    await c.login(of.user["username"], PASSWORD)
    return c


async def befriend(a: WsimClient, b: WsimClient) -> str:
    await a.befriend(b)
    return a.direct_conv(a.user_id, b.user_id)


@pytest.mark.parametrize("bus", BUSES)
async def test_messages_and_presence_cross_nodes(bus: str, tmp_path: Path, clients: list[WsimClient]) -> None:
    async with running_cluster(tmp_path, bus) as cluster:
        urls = cluster.urls
        alice = await user(clients, urls, 0)
        bob = await user(clients, urls, 1)
        carol = await user(clients, urls, 2)
        ab = await befriend(alice, bob)
        await befriend(alice, carol)
        group = await alice.create_group("trio", [bob.user_id, carol.user_id])
        gconv = f"g:{group['id']}"
        await alice.connect()
        await carol.connect()
        assert (alice.node, carol.node) == ("node-1", "node-3")
        # presence across nodes: bob comes online on node-2, alice (node-1) is told once
        await bob.connect()
        assert bob.node == "node-2"
        ev = await alice.next_event("presence", where=lambda e: e["user"] == bob.user_id)
        assert ev["online"] is True and ev["devices"] == 1
        for c in (alice, bob, carol):  # system messages: friend.accepted, group.created
            while True:
                m = await c.next_message()
                if m["conv"] == gconv:
                    break
        # 1:1 across nodes, both ways
        await alice.send(ab, "hi bob")
        assert texts(await collect(bob, 1)) == ["hi bob"]
        await bob.send(ab, "hi alice")
        assert texts(await collect(alice, 1)) == ["hi alice"]
        # a group spanning three nodes: every member gets everyone else's messages once, in order
        for i in range(5):
            for sender in (alice, bob, carol):
                await sender.send(gconv, f"{sender.device}-{i}")
        for c in (alice, bob, carol):
            got = await collect(c, 10)
            assert [m["seq"] for m in got] == sorted(m["seq"] for m in got)
            assert all(m["conv"] == gconv and m["device"] != c.device for m in got)
        # a second device of bob's, on node 3: presence says 2 devices, no new "online" flip
        bob2 = await device(clients, urls, 2, bob)
        await bob2.connect()
        _drain(bob2.messages)  # what the first sync of a new device brought: the recent history
        async with httpx.AsyncClient(base_url=urls[2]) as http:  # REST on a third node sees both devices
            friends = (await http.get("/api/friends", headers=alice._auth_headers())).json()["friends"]
        assert [(f["online"], f["devices"]) for f in friends if f["user"]["id"] == bob.user_id] == [(True, 2)]
        assert not [e for e in _drain(alice.events) if e.get("type") == "presence"]  # no second "online"
        await alice.send(ab, "to both of bob's devices")
        assert texts(await collect(bob, 1)) == texts(await collect(bob2, 1)) == ["to both of bob's devices"]
        # bob leaves on both nodes: alice is told "offline" once
        await bob.disconnect()
        await bob2.disconnect()
        ev = await alice.next_event("presence", where=lambda e: e["user"] == bob.user_id)
        assert ev["online"] is False
        await asyncio.sleep(0.3)
        assert not [e for e in _drain(alice.events) if e.get("type") == "presence"]
        # logout on one node closes every socket of that login session on every node (4010); another session of
        # the same user (alice2: a second login) stays open
        alice_tab = client(urls, 1)  # the same login session as alice, on node-2
        clients.append(alice_tab)
        alice_tab.user, alice_tab.access_token = alice.user, alice.access_token
        await alice_tab.connect()
        alice2 = await device(clients, urls, 2, alice)
        await alice2.connect()
        assert (alice.node, alice_tab.node, alice2.node) == ("node-1", "node-2", "node-3")
        await alice.logout()
        for c in (alice, alice_tab):
            await wait_until(lambda c=c: c.last_close is not None, 10, f"{c.node} closes the socket")
            assert c.last_close is not None and c.last_close[0] == 4010
        assert alice2.connected.is_set() and alice2.last_close is None


def _drain(q: asyncio.Queue[Any]) -> list[Any]:
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out


async def traffic(
    senders: list[tuple[WsimClient, str]], ledger: Ledger, stop: asyncio.Event, pause_s: float = 0.02
) -> int:
    """Each sender sends to its conversation until ``stop``; every acknowledged send goes into the ledger."""

    async def run(c: WsimClient, conv: str) -> int:
        n = 0
        while not stop.is_set():
            text = f"{c.device}#{n}"
            ack = await c.send(conv, text, timeout=60)
            assert ack is not None
            ledger.ack(c, ack, text)
            n += 1
            await asyncio.sleep(pause_s)
        return n

    counts = await asyncio.gather(*(run(c, conv) for c, conv in senders))
    return sum(counts)


class GroupTraffic:
    """Every member sending to the group while a ledger collects what each member's device releases."""

    def __init__(self, members: list[WsimClient], gconv: str) -> None:
        self.ledger = Ledger()
        self.devices = {m.device: (m, [gconv]) for m in members}
        self._stop = asyncio.Event()
        self._collected = asyncio.Event()
        self._collectors = [asyncio.create_task(self.ledger.collect(m, self._collected)) for m in members]
        self._sending = asyncio.create_task(traffic([(m, gconv) for m in members], self.ledger, self._stop))

    def acked(self) -> int:
        return sum(len(v) for v in self.ledger.acked.values())

    async def stop_and_check(self) -> int:
        """Stop sending, wait for every acknowledged message, and check each device got each exactly once, in
        order; return how many were sent."""
        self._stop.set()
        sent = await self._sending
        await wait_until(
            lambda: self.ledger.missing(self.devices) == 0,
            60,
            "every acknowledged message delivered",
            lambda: self.ledger.report(self.devices),
        )
        await asyncio.sleep(0.5)  # anything extra (a duplicate) would arrive by now
        self._collected.set()
        await asyncio.gather(*self._collectors)
        self.ledger.check(self.devices)
        return sent


async def group_setup(
    clients: list[WsimClient], urls: list[str], per_node: int = 2
) -> tuple[str, list[WsimClient]]:
    """Users on every node in one group (plus one direct chat), all connected."""
    members = [await user(clients, urls, node) for node in range(len(urls)) for _ in range(per_node)]
    owner = members[0]
    for m in members[1:]:
        await owner.befriend(m)
    group = await owner.create_group("ledger", [m.user_id for m in members[1:]])
    for m in members:
        await m.connect()
    return f"g:{group['id']}", members


@pytest.mark.slow
@pytest.mark.parametrize("bus", BUSES)
async def test_kill_9_of_a_node_during_traffic_loses_and_duplicates_nothing(
    bus: str, tmp_path: Path, clients: list[WsimClient]
) -> None:
    async with running_cluster(tmp_path, bus) as cluster:
        urls = cluster.urls
        gconv, members = await group_setup(clients, urls)
        # a user whose only device is on node-2 and does not come back: its presence must expire
        lonely = await user(clients, urls, 1, auto_reconnect=False)
        watcher = members[0]
        await befriend(watcher, lonely)
        await lonely.connect()
        await watcher.next_event("presence", where=lambda e: e["user"] == lonely.user_id and e["online"])
        run = GroupTraffic(members, gconv)
        await wait_until(lambda: run.acked() >= 30, 30, "traffic started")
        victims = [m for m in members if m.node == "node-2"]
        assert victims
        await cluster.kill(1)  # kill -9 node-2 mid-traffic
        await wait_until(
            lambda: all(v.connected.is_set() and v.node != "node-2" for v in victims), 30, "failover"
        )
        await wait_until(lambda: run.acked() >= 120, 60, "traffic after failover")
        sent = await run.stop_and_check()
        assert sent >= 120
        # the killed node's lonely device expires: its friend is told, and REST agrees
        ev = await watcher.next_event(
            "presence", timeout=30, where=lambda e: e["user"] == lonely.user_id and not e["online"]
        )
        assert ev["devices"] == 0
        for v in victims:
            assert v.stats.reconnects >= 1


@pytest.mark.slow
@pytest.mark.parametrize("bus", BUSES)
async def test_bus_outage_during_traffic_is_repaired_by_resync(
    bus: str, tmp_path: Path, clients: list[WsimClient]
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        broker = None
        if bus == "redis":
            broker = await stack.enter_async_context(private_redis(tmp_path))
        elif bus == "mqtt":
            broker = await stack.enter_async_context(private_mosquitto(tmp_path))
        cluster: LocalCluster = await stack.enter_async_context(
            running_cluster(tmp_path, bus, bus_port=broker.port if broker else None)
        )
        urls = cluster.urls
        gconv, members = await group_setup(clients, urls)
        run = GroupTraffic(members, gconv)
        await wait_until(lambda: run.acked() >= 30, 30, "traffic started")
        if broker is not None:
            await broker.restart(down_s=0.5)  # the broker crashes and comes back empty
        else:
            prefix = cluster.settings.strategies.bus.prefix  # type: ignore[union-attr]
            # the broker drops every node's connection at once
            assert await asyncio.to_thread(rabbitmq_close_connections, f"wsim-bus:{prefix}:") == len(urls)
        before = run.acked()
        await wait_until(lambda: run.acked() >= before + 90, 60, "traffic after the outage")
        await run.stop_and_check()
        gaps = await _metric(urls, "wsim_bus_gaps_total")
        assert gaps > 0  # the outage was noticed and repaired by resync, not by luck


async def _metric(urls: list[str], name: str) -> float:
    total = 0.0
    async with httpx.AsyncClient() as http:
        for url in urls:
            for line in (await http.get(f"{url}/metrics")).text.splitlines():
                if line.startswith(name):
                    total += float(line.rsplit(" ", 1)[1])
    return total
