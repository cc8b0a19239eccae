"""Reply / quote and message search against a real server: the protocol field and its validation, the quote in
every read path (live push, sync, history, search) and after a recall, and the permission boundaries of search
over REST (docs/protocol.md "Reply / quote", "Search")."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from core.sdk import ClientError, SendError, WsimClient
from tests.conftest import ClientFactory
from tests.support.helpers import collect, make_friends


async def until(client: WsimClient, match: Any) -> dict[str, Any]:
    """The next pushed message that ``match`` accepts (earlier ones, e.g. system notices, are skipped)."""
    while True:
        msg = await client.next_message()
        if match(msg):
            return msg


def by_id(page: dict[str, Any], msg_id: str) -> dict[str, Any]:
    return next(m for m in page["messages"] if m["id"] == msg_id)


async def test_reply_quote_live_sync_history_and_after_recall(make_client: ClientFactory) -> None:
    alice, bob = await make_client(), await make_client()
    conv = await make_friends(alice, bob)
    bob_phone = await make_client(login_as=bob)
    await bob_phone.next_message()
    await bob_phone.disconnect()
    question = await alice.send(conv, "周末一起去爬山吗？" + "很长" * 60)
    assert question is not None
    await until(bob, lambda m: m["id"] == question["id"])
    answer = await bob.send(conv, "好的！", reply_to=question["seq"])
    assert answer is not None
    live = await until(alice, lambda m: m["id"] == answer["id"])
    assert live["body"] == {"text": "好的！", "reply_to": question["seq"]}
    quote = live["quote"]
    assert quote["seq"] == question["seq"] and quote["id"] == question["id"]
    assert quote["from"] == alice.user_id and quote["kind"] == "text"
    assert quote["text"].startswith("周末一起去爬山吗？") and len(quote["text"]) == 80
    page = await alice.history(conv)
    assert by_id(page, answer["id"])["quote"] == quote
    await bob_phone.connect()  # an offline device gets the quote on sync too
    synced = await collect(bob_phone, 2)
    assert synced[1]["id"] == answer["id"] and synced[1]["quote"] == quote
    # The original is recalled: every later read says so, and its text is gone from the reply too.
    await alice.recall(question["id"])
    await until(bob, lambda m: m["kind"] == "recall")
    for reader in (alice, bob):
        reply = by_id(await reader.history(conv), answer["id"])
        assert reply["quote"] == {
            "seq": question["seq"],
            "id": question["id"],
            "from": alice.user_id,
            "recalled": True,
        }
        assert "爬山" not in orjson.dumps(reply).decode()
    found = await bob.search("好的")
    assert found["messages"][0]["quote"]["recalled"] is True


async def test_reply_to_must_be_a_readable_message_of_the_conversation(make_client: ClientFactory) -> None:
    alice, bob, carol = await make_client(), await make_client(), await make_client()
    conv = await make_friends(alice, bob)
    await alice.befriend(carol)
    await until(alice, lambda m: m["kind"] == "system")
    for bad, why in ((99, "no message"), (1, "no message")):  # no such seq; seq 1 is a system notice
        with pytest.raises(SendError) as info:
            await alice.send(conv, "re", reply_to=bad)
        assert info.value.code == "not_found" and why in info.value.message
    # A recalled original may still be quoted (so a resend of a reply stays idempotent): "original recalled".
    gone = await alice.send(conv, "oops")
    assert gone is not None
    first = await bob.send(conv, "re: oops", cmid="re-oops", reply_to=gone["seq"])
    assert first is not None
    await alice.recall(gone["id"])
    await until(bob, lambda m: m["kind"] == "recall")
    resent = await bob.send(conv, "re: oops", cmid="re-oops", reply_to=gone["seq"])
    assert resent is not None and resent["id"] == first["id"] and resent["duplicate"]
    late = await bob.send(conv, "re: oops again", reply_to=gone["seq"])
    assert late is not None
    assert by_id(await bob.history(conv), late["id"])["quote"] == {
        "seq": gone["seq"],
        "id": gone["id"],
        "from": alice.user_id,
        "recalled": True,
    }
    # A group member who joined later may not quote what was said before.
    group = await alice.create_group("trip", [bob.user_id])
    early = await alice.send(group["conv"], "before carol")
    assert early is not None
    await alice.request("POST", f"/api/groups/{group['id']}/members", json={"user_ids": [carol.user_id]})
    with pytest.raises(SendError) as info:
        await carol.send(group["conv"], "re", reply_to=early["seq"])
    assert info.value.code == "not_found"
    # Bob may quote it; the one frame pushed to everyone cannot show carol the text, history shows it per reader.
    reply = await bob.send(group["conv"], "re: before", reply_to=early["seq"])
    assert reply is not None
    pushed = await until(carol, lambda m: m["id"] == reply["id"])
    assert pushed["quote"] == {"seq": early["seq"], "unavailable": True}
    assert by_id(await carol.history(group["conv"]), reply["id"])["quote"] == {
        "seq": early["seq"],
        "unavailable": True,
    }
    assert by_id(await alice.history(group["conv"]), reply["id"])["quote"]["text"] == "before carol"


async def test_search_only_what_the_user_may_read(make_client: ClientFactory) -> None:
    alice, bob, carol, dave = [await make_client() for _ in range(4)]
    direct = await make_friends(alice, bob)
    for other in (carol, dave):
        await alice.befriend(other)
    group = await alice.create_group("火锅小组", [bob.user_id, carol.user_id])
    g = group["conv"]
    sent: dict[str, dict[str, Any]] = {}

    async def send(key: str, who: WsimClient, conv: str, text: str) -> None:
        ack = await who.send(conv, text)
        assert ack is not None
        sent[key] = ack

    await send("direct", alice, direct, "今晚吃火锅 hotpot (direct)")
    await send("before_dave", alice, g, "火锅店订好了 hotpot (before dave)")
    await alice.request("POST", f"/api/groups/{group['id']}/members", json={"user_ids": [dave.user_id]})
    await send("after_dave", bob, g, "我也想吃火锅 hotpot (after dave)")
    await send("recalled", alice, g, "火锅太辣了 hotpot (recalled)")
    await alice.recall(sent["recalled"]["id"])
    await until(bob, lambda m: m["kind"] == "recall")

    def ids(page: dict[str, Any]) -> list[str]:
        return [m["id"] for m in page["messages"]]

    for q in ("火锅", "HotPot", "锅"):  # trigram index, ASCII case-insensitive, the 1-character scan
        assert ids(await alice.search(q)) == [sent[k]["id"] for k in ("after_dave", "before_dave", "direct")]
        assert ids(await bob.search(q)) == [sent[k]["id"] for k in ("after_dave", "before_dave", "direct")]
        assert ids(await carol.search(q)) == [sent[k]["id"] for k in ("after_dave", "before_dave")]
        assert ids(await dave.search(q)) == [sent["after_dave"]["id"]]  # joined later: his window only
    # carol leaves the group: nothing of it is hers to search any more
    await carol.request("POST", f"/api/groups/{group['id']}/leave")
    assert ids(await carol.search("火锅")) == []
    with pytest.raises(ClientError) as info:
        await carol.search("火锅", conv=g)
    assert info.value.code == "not_member"
    with pytest.raises(ClientError) as info:
        await dave.search("火锅", conv=direct)
    assert info.value.code == "not_member"
    # one conversation, paging by cursor
    first = await alice.search("hotpot", conv=g, limit=1)
    assert ids(first) == [sent["after_dave"]["id"]] and first["next"] == sent["after_dave"]["id"]
    second = await alice.search("hotpot", conv=g, limit=1, before=first["next"])
    assert ids(second) == [sent["before_dave"]["id"]] and second["next"] is None  # the last page
    hit = (await alice.search("订好了"))["messages"][0]
    assert hit["conv"] == g and hit["seq"] == sent["before_dave"]["seq"] and "hotpot" in hit["body"]["text"]


async def test_search_rejects_bad_queries(make_client: ClientFactory) -> None:
    alice = await make_client()
    bad = (
        {"q": ""},
        {"q": "x" * 101},
        {"q": "a\x00b"},
        {"q": "ok", "before": "abc"},
        {"q": "ok", "limit": 0},
    )
    for params in bad:  # a NUL was a 503 from SQLite FTS5 (found by schemathesis)
        with pytest.raises(ClientError) as info:
            await alice.request("GET", "/api/search/messages", params=params)
        assert info.value.status == 422
    with pytest.raises(ClientError) as info:
        await alice.search("   ")
    assert info.value.code == "invalid"


async def test_history_around_a_message(make_client: ClientFactory) -> None:
    alice, bob = await make_client(), await make_client()
    conv = await make_friends(alice, bob)  # seq 1 is the friendship notice
    for i in range(2, 41):
        await alice.send(conv, f"m{i}")
    page = await bob.history(conv, around=20, limit=10)
    assert [m["seq"] for m in page["messages"]] == list(range(16, 26))
    assert page["has_older"] and page["has_newer"]
    edge = await bob.history(conv, around=2, limit=10)
    assert [m["seq"] for m in edge["messages"]] == list(range(1, 8)) and not edge["has_older"]
    top = await bob.history(conv, around=40, limit=10)
    assert [m["seq"] for m in top["messages"]] == list(range(36, 41)) and not top["has_newer"]
