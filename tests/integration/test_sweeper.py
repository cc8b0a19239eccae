"""A message stored but never fanned out (its node died between the two) still reaches an online recipient:
the anti-entropy sweeper notices the head is ahead of what the device holds and asks it to sync."""

from __future__ import annotations

import asyncio

from core.models import MessageDraft, MessageKind
from core.node import Node
from core.sdk import WsimClient
from tests.conftest import ServerFactory
from tests.support.helpers import collect, make_friends


async def _stored_without_fanout(server_node: Node, conv: str, sender: int, text: str) -> None:
    now = server_node.clock.wall_ms()
    draft = MessageDraft(
        server_node.ids.next_id(now), conv, sender, "gone-device", f"cm-{text}", MessageKind.TEXT,
        {"text": text}, now, None,
    )  # fmt: skip
    await server_node.messages_store.append(draft)


async def test_the_sweeper_delivers_a_stored_message_that_was_never_fanned_out(
    start_server: ServerFactory, clients: list[WsimClient]
) -> None:
    server = await start_server({"sync": {"sweep_interval_s": 0.2, "sweep_grace_s": 0.3}})
    alice, bob = WsimClient(server.url), WsimClient(server.url)
    clients += [alice, bob]
    await alice.register("sweepa", "password-123")
    await bob.register("sweepb", "password-123")
    await alice.connect()
    await bob.connect()
    conv = await make_friends(alice, bob)
    await alice.send(conv, "pushed")
    assert [m["body"]["text"] for m in await collect(bob, 1)] == ["pushed"]
    resyncs = server.node.metrics.sweep_resyncs.value()
    await _stored_without_fanout(server.node, conv, int(alice.user_id), "never pushed")
    got = await collect(bob, 1, timeout=5)
    assert got[0]["body"]["text"] == "never pushed"
    assert server.node.metrics.sweep_resyncs.value() > resyncs  # the sweeper did it, not a push
    # and a device that holds everything is not asked again
    before = server.node.metrics.sweep_resyncs.value()
    await asyncio.sleep(1.0)
    assert server.node.metrics.sweep_resyncs.value() == before


async def test_the_sweeper_can_be_turned_off(start_server: ServerFactory, clients: list[WsimClient]) -> None:
    server = await start_server({"sync": {"sweep_interval_s": 0}})
    alice, bob = WsimClient(server.url), WsimClient(server.url)
    clients += [alice, bob]
    await alice.register("sweepc", "password-123")
    await bob.register("sweepd", "password-123")
    await alice.connect()
    await bob.connect()
    conv = await make_friends(alice, bob)
    await _stored_without_fanout(server.node, conv, int(alice.user_id), "stays in the store")
    await asyncio.sleep(1.0)
    assert bob.messages.empty()  # without anti-entropy only the next sync would bring it
    assert server.node.sweeper.interval_s == 0
