from __future__ import annotations

from tests.conftest import ClientFactory


async def test_two_users_chat(make_client: ClientFactory) -> None:
    alice = await make_client("alice")
    bob = await make_client("bob")
    await alice.befriend(bob)
    conv = alice.direct_conv(alice.user_id, bob.user_id)
    # the friendship system message arrives on both sides
    sys_a = await alice.next_message()
    sys_b = await bob.next_message()
    assert sys_a["kind"] == sys_b["kind"] == "system"
    ack = await alice.send(conv, "hello bob")
    assert ack is not None and ack["seq"] == 2
    msg = await bob.next_message()
    assert msg["body"]["text"] == "hello bob" and msg["seq"] == 2
    await bob.send(conv, "hi alice")
    msg = await alice.next_message()
    assert msg["body"]["text"] == "hi alice" and msg["seq"] == 3
