"""A message stored but never fanned out (its node died between the two) still reaches an online recipient:
the anti-entropy sweeper notices the head is ahead of what the device holds and asks it to sync."""

from __future__ import annotations

from core.models import MessageDraft, MessageKind
from core.node import Node
from tests.conftest import ServerFactory, UrlClientFactory
from tests.support.helpers import collect, eventually, make_friends
from tests.support.server import node_fake_clock


async def _stored_without_fanout(server_node: Node, conv: str, sender: int, text: str) -> None:
    now = server_node.clock.wall_ms()
    draft = MessageDraft(
        server_node.ids.next_id(now), conv, sender, "gone-device", f"cm-{text}", MessageKind.TEXT,
        {"text": text}, now, None,
    )  # fmt: skip
    await server_node.messages_store.append(draft)


def count_sweeps(node: Node) -> list[int]:
    """A one-item counter of finished sweeps: the barrier a test waits on after moving the fake clock."""
    done = [0]
    sweep_once = node.sweeper.sweep_once

    async def counted() -> int:
        try:
            return await sweep_once()
        finally:
            done[0] += 1

    node.sweeper.sweep_once = counted  # type: ignore[method-assign]
    return done


async def test_the_sweeper_delivers_a_stored_message_that_was_never_fanned_out(
    start_server: ServerFactory, client_on: UrlClientFactory
) -> None:
    clock = node_fake_clock()
    server = await start_server({"sync": {"sweep_interval_s": 10, "sweep_grace_s": 5}}, clock=clock)
    sweeps = count_sweeps(server.node)
    alice, bob = await client_on(server.url), await client_on(server.url)
    conv = await make_friends(alice, bob)
    await alice.send(conv, "pushed")
    assert [m["body"]["text"] for m in await collect(bob, 1)] == ["pushed"]
    resyncs = server.node.metrics.sweep_resyncs.value()
    await _stored_without_fanout(server.node, conv, int(alice.user_id), "never pushed")
    clock.advance(10)  # one sweep; the message is 10 s old, past the grace
    for device in (bob, alice):  # alice's device did not send it either: both are behind
        got = await collect(device, 1)
        assert got[0]["body"]["text"] == "never pushed"
    await eventually(lambda: sweeps[0] == 1)
    assert server.node.metrics.sweep_resyncs.value() == resyncs + 2  # the sweeper did it, not a push
    # and a device that holds everything is not asked again
    for n in (2, 3, 4):
        clock.advance(10)
        await eventually(lambda n=n: sweeps[0] == n)  # type: ignore[misc]
    assert server.node.metrics.sweep_resyncs.value() == resyncs + 2


async def test_the_sweeper_can_be_turned_off(
    start_server: ServerFactory, client_on: UrlClientFactory
) -> None:
    clock = node_fake_clock()
    server = await start_server({"sync": {"sweep_interval_s": 0}}, clock=clock)
    alice, bob = await client_on(server.url), await client_on(server.url)
    conv = await make_friends(alice, bob)
    await _stored_without_fanout(server.node, conv, int(alice.user_id), "stays in the store")
    # ten default sweep intervals; less than the heartbeat's 60 s, which reaps sockets silent on fake time
    clock.advance(50)
    # no task, so nothing can ask later either: without anti-entropy only the next sync brings the message
    assert server.node.sweeper.interval_s == 0 and server.node.sweeper._task is None
    assert server.node.metrics.sweep_resyncs.value() == 0
    assert bob.messages.empty()
