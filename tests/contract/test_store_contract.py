"""The store contract (strategies/store/base.py), run against every registered backend on a real server.

Parametrized over the registries themselves: a backend registered tomorrow is tested by these same tests (and
fails loudly until tests/support/stores.py knows how to give it a namespace)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from core.models import (
    DeadLetter,
    FileMeta,
    FriendRequest,
    Group,
    Member,
    MessageDraft,
    MessageKind,
    RefreshToken,
    Role,
    User,
)
from strategies.store import MESSAGE_STORES, USER_STORES
from strategies.store.base import DuplicateError, TierableStore, UserStore
from strategies.store.config import MessageStoreConfig, UserStoreConfig
from tests.support.stores import context, param_backend_config

_ids = itertools.count(1_000_000)


def nid() -> int:
    return next(_ids)


def draft(
    conv: str, text: str = "hi", key: str | None = "auto", sender: int = 7, ts: int = 1_000
) -> MessageDraft:
    i = nid()
    cmid = f"c{i}"
    dk = f"{sender}:dev:{cmid}" if key == "auto" else key
    return MessageDraft(i, conv, sender, "dev", cmid, MessageKind.TEXT, {"text": text}, ts, dk)


@dataclass
class Backend:
    """Builds store instances on one namespace; several instances act as several nodes or a restart. Closes
    what is still open on exit."""

    cfg: dict[str, Any]
    tmp_path: Path
    opened: list[Any] = field(default_factory=list)

    async def __aenter__(self) -> Backend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for s in list(self.opened):
            await s.close()

    async def messages(self) -> TierableStore:
        config = TypeAdapter(MessageStoreConfig).validate_python(self.cfg)
        store: Any = MESSAGE_STORES.create(config, context(self.tmp_path))
        await store.start()
        self.opened.append(store)
        return store  # type: ignore[no-any-return]

    async def users(self) -> UserStore:
        config = TypeAdapter(UserStoreConfig).validate_python(self.cfg)
        store = USER_STORES.create(config, context(self.tmp_path))
        await store.start()
        self.opened.append(store)
        return store

    async def close(self, store: Any) -> None:
        await store.close()
        self.opened.remove(store)


@pytest.fixture(params=MESSAGE_STORES.names())
async def mbackend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with param_backend_config(request, tmp_path) as cfg, Backend(cfg, tmp_path) as b:
        yield b


@pytest.fixture(params=USER_STORES.names())
async def ubackend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with param_backend_config(request, tmp_path) as cfg, Backend(cfg, tmp_path) as b:
        yield b


# =========================================================================== messages


async def test_seq_is_gap_free_per_conversation_under_concurrency(mbackend: Backend) -> None:
    store = await mbackend.messages()
    convs = ["d:1:2", "g:5", "d:3:4"]
    drafts = [draft(c, f"{c}-{i}") for i in range(30) for c in convs]
    results = await asyncio.gather(*(store.append(d) for d in drafts))
    assert all(r.created for r in results)
    for c in convs:
        seqs = sorted(r.message.seq for r in results if r.message.conv == c)
        assert seqs == list(range(1, 31))
        page = await store.messages_after(c, 0, 100)
        assert [m.seq for m in page] == list(range(1, 31))
        assert {m.id for m in page} == {d.id for d in drafts if d.conv == c}


async def test_idempotent_append_returns_original_and_uses_no_seq(mbackend: Backend) -> None:
    store = await mbackend.messages()
    first = draft("d:1:2", "original")
    r1 = await store.append(first)
    again = MessageDraft(
        nid(), first.conv, first.sender, first.device, first.cmid, first.kind, first.body, 5, first.dedup_key
    )
    r2, r3 = await asyncio.gather(store.append(again), store.append(draft("d:1:2", "next")))
    assert r1.created and not r2.created
    assert r2.message.id == r1.message.id and r2.message.seq == 1 and r2.message.body == {"text": "original"}
    assert r3.message.seq == 2
    assert [m.seq for m in await store.messages_after("d:1:2", 0, 10)] == [1, 2]


async def test_two_copies_in_one_batch_store_once(mbackend: Backend) -> None:
    store = await mbackend.messages()
    a = draft("d:1:2")
    b = MessageDraft(nid(), a.conv, a.sender, a.device, a.cmid, a.kind, a.body, a.ts_ms, a.dedup_key)
    ra, rb = await asyncio.gather(store.append(a), store.append(b))
    assert sorted([ra.created, rb.created]) == [False, True]
    assert ra.message.id == rb.message.id
    assert len(await store.messages_after("d:1:2", 0, 10)) == 1


async def test_without_dedup_key_every_resend_is_stored(mbackend: Backend) -> None:
    store = await mbackend.messages()
    a = draft("d:1:2", key=None)
    b = MessageDraft(nid(), a.conv, a.sender, a.device, a.cmid, a.kind, a.body, a.ts_ms, None)
    ra, rb = await store.append(a), await store.append(b)
    assert ra.created and rb.created and {ra.message.seq, rb.message.seq} == {1, 2}


async def test_seq_continues_after_restart_and_across_nodes(mbackend: Backend) -> None:
    node1 = await mbackend.messages()
    for i in range(5):
        await node1.append(draft("g:9", f"a{i}"))
    await mbackend.close(node1)
    node1 = await mbackend.messages()  # restart: every in-process hint is gone
    node2 = await mbackend.messages()
    results = await asyncio.gather(
        *(node1.append(draft("g:9", f"n1-{i}")) for i in range(20)),
        *(node2.append(draft("g:9", f"n2-{i}")) for i in range(20)),
    )
    seqs = sorted(r.message.seq for r in results)
    assert seqs == list(range(6, 46))
    page = await node2.messages_after("g:9", 0, 100)
    assert [m.seq for m in page] == list(range(1, 46))


async def test_resend_to_another_node_meets_the_unique_index(mbackend: Backend) -> None:
    node1, node2 = await mbackend.messages(), await mbackend.messages()
    a = draft("d:1:2")
    b = MessageDraft(nid(), a.conv, a.sender, a.device, a.cmid, a.kind, a.body, a.ts_ms, a.dedup_key)
    ra, rb = await asyncio.gather(node1.append(a), node2.append(b))
    assert sorted([ra.created, rb.created]) == [False, True] and ra.message.id == rb.message.id
    nxt = await node2.append(draft("d:1:2"))
    assert nxt.message.seq == 2


async def test_paging_before_and_after(mbackend: Backend) -> None:
    store = await mbackend.messages()
    for i in range(25):
        await store.append(draft("d:1:2", f"m{i}"))
    before = await store.messages_before("d:1:2", 11, 4)
    assert [m.seq for m in before] == [7, 8, 9, 10]
    assert [m.body["text"] for m in before] == ["m6", "m7", "m8", "m9"]
    after = await store.messages_after("d:1:2", 20, 10)
    assert [m.seq for m in after] == [21, 22, 23, 24, 25]
    assert await store.messages_after("d:1:2", 25, 10) == []
    assert await store.messages_before("d:9:10", 100, 10) == []


async def test_heads_and_get_message(mbackend: Backend) -> None:
    store = await mbackend.messages()
    await store.append(draft("d:1:2", "x"))
    last = (await store.append(draft("d:1:2", "y"))).message
    heads = await store.heads(["d:1:2", "d:5:6"])
    assert set(heads) == {"d:1:2"}
    head = heads["d:1:2"]
    assert head.last_seq == 2 and head.last is not None and head.last.id == last.id
    got = await store.get_message(last.id)
    assert got == last
    assert await store.get_message(nid()) is None


async def test_recall_once_clears_the_body(mbackend: Backend) -> None:
    store = await mbackend.messages()
    m = (await store.append(draft("d:1:2", "secret"))).message
    assert await store.mark_recalled(m.id)
    assert not await store.mark_recalled(m.id)
    got = await store.get_message(m.id)
    assert got is not None and got.recalled and got.body == {}


async def test_reply_reference_is_stored_with_the_message(mbackend: Backend) -> None:
    store = await mbackend.messages()
    original = (await store.append(draft("d:1:2", "question"))).message
    d = draft("d:1:2", "answer")
    d.body["reply_to"] = original.seq
    reply = (await store.append(d)).message
    for got in (
        await store.get_message(reply.id),
        (await store.messages_after("d:1:2", original.seq, 10))[0],
        (await store.heads(["d:1:2"]))["d:1:2"].last,
    ):
        assert got is not None and got.body == {"text": "answer", "reply_to": original.seq}


async def _searchable(store: TierableStore, texts: list[str], conv: str = "g:7") -> list[int]:
    return [(await store.append(draft(conv, t))).message.id for t in texts]


async def test_search_finds_substrings_chinese_included_newest_first(mbackend: Backend) -> None:
    store = await mbackend.messages()
    ids = await _searchable(
        store, ["今天天气很好", "我们去吃火锅吧", "Hello World", "天气预报说明天下雨", "100% sure_thing"]
    )
    w = {"g:7": 1}
    assert [m.id for m in await store.search_messages(w, "天气", None, 10)] == [ids[3], ids[0]]
    assert [m.id for m in await store.search_messages(w, "吃火锅", None, 10)] == [ids[1]]
    assert [m.id for m in await store.search_messages(w, "hello wor", None, 10)] == [ids[2]]  # ASCII case
    assert [m.id for m in await store.search_messages(w, "雨", None, 10)] == [
        ids[3]
    ]  # shorter than a trigram
    assert [m.id for m in await store.search_messages(w, "0%", None, 10)] == [
        ids[4]
    ]  # LIKE wildcards literal
    assert await store.search_messages(w, "u_e", None, 10) == []  # would match "ure" as a wildcard
    assert await store.search_messages(w, '"OR', None, 10) == []  # query syntax is inert
    assert await store.search_messages(w, "火锅店", None, 10) == []
    found = await store.search_messages(w, "天气", None, 10)
    assert found[0].body == {"text": "天气预报说明天下雨"} and found[0].conv == "g:7" and found[0].seq == 4


async def test_search_pages_by_id(mbackend: Backend) -> None:
    store = await mbackend.messages()
    ids = await _searchable(store, [f"第{i}条 消息" for i in range(7)])
    w = {"g:7": 1}
    first = await store.search_messages(w, "条 消息", None, 3)
    assert [m.id for m in first] == ids[::-1][:3]
    second = await store.search_messages(w, "条 消息", first[-1].id, 3)
    assert [m.id for m in second] == ids[::-1][3:6]
    third = await store.search_messages(w, "条 消息", second[-1].id, 3)
    assert [m.id for m in third] == [ids[0]]


async def test_search_never_leaves_the_readable_windows(mbackend: Backend) -> None:
    store = await mbackend.messages()
    early = await _searchable(store, ["secret plan 秘密", "secret plan 秘密"], "g:8")
    late = await _searchable(store, ["secret plan 秘密"], "g:8")
    other = await _searchable(store, ["secret plan 秘密"], "d:1:2")
    recalled = await _searchable(store, ["secret plan 秘密"], "g:8")
    assert await store.mark_recalled(recalled[0])
    for q in ("secret plan", "秘密", "密"):
        # joined g:8 at seq 3: the first two are outside the window; d:1:2 is not the caller's; recalled never
        assert [m.id for m in await store.search_messages({"g:8": 3}, q, None, 10)] == late
        got = await store.search_messages({"g:8": 1, "d:1:2": 1}, q, None, 10)
        assert [m.id for m in got] == [other[0], late[0], early[1], early[0]]
        assert await store.search_messages({}, q, None, 10) == []


async def test_search_follows_tier_moves(mbackend: Backend) -> None:
    store = await mbackend.messages()
    ids = await _searchable(store, ["搬走的消息 moved"])
    moved = await store.oldest(2_000, 10)
    assert await store.delete_messages(moved) == 1
    assert await store.search_messages({"g:7": 1}, "搬走的消息", None, 10) == []
    assert await store.import_messages(moved) == 1
    assert [m.id for m in await store.search_messages({"g:7": 1}, "搬走的消息", None, 10)] == ids


async def test_marks_only_move_forward(mbackend: Backend) -> None:
    store = await mbackend.messages()
    await store.set_marks("g:1", 5, delivered=10, read=3)
    await asyncio.gather(
        store.set_marks("g:1", 5, delivered=4, read=8), store.set_marks("g:1", 6, delivered=2)
    )
    marks = await store.get_marks("g:1")
    assert (marks[5].delivered, marks[5].read) == (10, 8)
    assert (marks[6].delivered, marks[6].read) == (2, 0)
    mine = await store.user_marks(5, ["g:1", "g:2"])
    assert set(mine) == {"g:1"} and mine["g:1"].read == 8


async def test_queued_marks_are_written_with_the_next_batch(mbackend: Backend) -> None:
    store = await mbackend.messages()
    for seq in range(1, 30):  # many fire-and-forget marks of one user merge into one row
        store.queue_marks("d:3:4", 3, delivered=seq)
    store.queue_marks("d:3:4", 4, read=7)
    await store.set_marks("d:3:4", 9, delivered=1)  # returns after a batch that carries the queued marks
    marks = await store.get_marks("d:3:4")
    assert (marks[3].delivered, marks[4].read, marks[9].delivered) == (29, 7, 1)


async def test_dead_letters(mbackend: Backend) -> None:
    store = await mbackend.messages()
    letters = [DeadLetter(nid(), nid(), "d:1:2", i, 2, "dev", 4, "no ack", 1000 + i) for i in range(3)]
    for letter in letters:
        await store.add_dead_letter(letter)
    assert await store.count_dead_letters() == 3
    listed = await store.list_dead_letters(2, 0)
    assert [x.id for x in listed] == [letters[2].id, letters[1].id]
    assert listed[0] == letters[2]


async def test_tier_operations_are_idempotent_and_keep_the_counter(mbackend: Backend) -> None:
    hot = await mbackend.messages()
    msgs = [(await hot.append(draft("d:1:2", f"m{i}", ts=1000 + i))).message for i in range(6)]
    await hot.append(draft("g:3", "new", ts=5000))
    old = await hot.oldest(1004, 100)
    assert [m.id for m in old] == [m.id for m in msgs[:4]]
    assert await hot.delete_messages(old) == 4
    assert await hot.delete_messages(old) == 0  # rerun after an interruption: nothing left to delete
    # the conversation's counter survives its messages leaving: the next number is 7, never 1 again
    nxt = await hot.append(draft("d:1:2", "after"))
    assert nxt.message.seq == 7
    assert [m.seq for m in await hot.messages_after("d:1:2", 0, 10)] == [5, 6, 7]
    # import keeps ids and seqs and skips what is already there
    assert await hot.import_messages(old[:2]) == 2
    assert await hot.import_messages(old) == 2
    assert [m.seq for m in await hot.messages_after("d:1:2", 0, 10)] == [1, 2, 3, 4, 5, 6, 7]
    again = await hot.append(draft("d:1:2", "later"))
    assert again.message.seq == 8


# =========================================================================== users


def user(name: str, display: str | None = None) -> User:
    return User(nid(), name, display or name.title(), "hash", 1000)


async def test_users_unique_names_lookup_and_search(ubackend: Backend) -> None:
    store = await ubackend.users()
    alice, bob = user("alice", "Alice Liddell"), user("bob", "Bobby Tables")
    await store.create_user(alice)
    await store.create_user(bob)
    with pytest.raises(DuplicateError):
        await store.create_user(user("alice"))
    assert await store.get_user(alice.id) == alice
    assert await store.get_user_by_name("alice") == alice
    assert await store.get_user_by_name("nobody") is None
    assert set(await store.get_users([alice.id, bob.id, nid()])) == {alice.id, bob.id}
    assert [u.username for u in await store.search_users("ali", 10)] == ["alice"]
    assert [u.username for u in await store.search_users("Tables", 10)] == ["bob"]
    assert await store.search_users("%", 10) == []  # LIKE wildcards are escaped
    updated = await store.update_user(alice.id, display_name="A.", bio="hi")
    assert updated is not None and (updated.display_name, updated.bio) == ("A.", "hi")


async def test_sessions_and_refresh_token_rotation(ubackend: Backend) -> None:
    store = await ubackend.users()
    u = user("tokens")
    await store.create_user(u)
    await store.create_session("fam1", u.id, "dev", 1000)
    assert await store.session_active("fam1")
    assert await store.session_user("fam1") == u.id and await store.session_user("unknown") is None
    await store.add_refresh_token(RefreshToken("h1", u.id, "fam1", 99_999))
    results = await asyncio.gather(*(store.claim_refresh_token("h1", 5000 + i) for i in range(5)))
    assert sorted(ok for _, ok, _ in results) == [False] * 4 + [True]
    assert all(got == u for _, _, got in results)  # the user is read in the claiming transaction
    (winner,) = [5000 + i for i, (_, ok, _) in enumerate(results) if ok]
    tok, ok, _ = await store.claim_refresh_token("h1", 9000)
    assert tok is not None and not ok and tok.used_ms == winner  # when it was first exchanged
    assert await store.claim_refresh_token("nope", 9000) == (None, False, None)
    assert await store.revoke_session("fam1") == u.id
    assert not await store.session_active("fam1")
    assert await store.session_user("fam1") is None  # revoked
    assert await store.revoke_session("unknown") is None


async def test_a_refresh_that_cannot_succeed_does_not_spend_the_token(ubackend: Backend) -> None:
    store = await ubackend.users()
    u = user("spender")
    await store.create_user(u)
    await store.create_session("fam2", u.id, None, 1000)
    await store.add_refresh_token(RefreshToken("expired", u.id, "fam2", 5000))
    await store.add_refresh_token(RefreshToken("orphan", nid(), "fam2", 99_999))  # its user does not exist
    tok, ok, _ = await store.claim_refresh_token("expired", 5000)
    assert tok is not None and not ok and not tok.used
    tok, ok, got = await store.claim_refresh_token("orphan", 5000)
    assert tok is not None and not ok and got is None
    tok, ok, _ = await store.claim_refresh_token("orphan", 5001)
    assert tok is not None and not tok.used  # still unspent


async def test_friends_requests_and_blocks(ubackend: Backend) -> None:
    store = await ubackend.users()
    req = FriendRequest(nid(), 1, 2, "hello", "pending", 1000)
    await store.add_friend_request(req)
    assert await store.pending_request(1, 2) == req
    assert await store.pending_request(2, 1) is None
    assert [r.id for r in await store.list_friend_requests(2)] == [req.id]
    await store.set_friend_request_status(req.id, "accepted")
    got = await store.get_friend_request(req.id)
    assert got is not None and got.status == "accepted"
    await store.add_friendship(1, 2, 5000)
    await store.add_friendship(1, 2, 6000)  # no-op
    assert await store.are_friends(1, 2) and await store.are_friends(2, 1)
    assert [f.user_id for f in await store.list_friends(2)] == [1]
    assert await store.set_remark(1, 2, "bestie")
    assert await store.set_remark(1, 2, "bestie")  # unchanged value still "found"
    assert not await store.set_remark(1, 3, "x")
    assert (await store.list_friends(1))[0].remark == "bestie"
    assert await store.remove_friendship(2, 1)
    assert not await store.are_friends(1, 2) and not await store.remove_friendship(1, 2)
    await store.block(1, 3, 100)
    await store.block(1, 3, 200)
    assert await store.is_blocked(1, 3) and not await store.is_blocked(3, 1)
    assert await store.list_blocked(1) == [3]
    assert await store.unblock(1, 3) and not await store.unblock(1, 3)


async def test_groups_and_membership(ubackend: Backend) -> None:
    store = await ubackend.users()
    g = Group(nid(), "team", 1, 1000)
    await store.create_group(g, [Member(1, Role.OWNER, 1000, 1), Member(2, Role.MEMBER, 1000, 1)])
    got = await store.get_group(g.id)
    assert got is not None and (got.name, got.member_count, got.dissolved) == ("team", 2, False)
    added = await store.add_members(g.id, [Member(2, Role.MEMBER, 2000, 5), Member(3, Role.MEMBER, 2000, 5)])
    assert added == [3]
    assert [m.user_id for m in await store.get_members(g.id)] == [1, 2, 3]
    m3 = await store.get_member(g.id, 3)
    assert m3 is not None and m3.joined_seq == 5
    assert await store.set_role(g.id, 2, Role.ADMIN) and not await store.set_role(g.id, 9, Role.ADMIN)
    assert [x.id for x in await store.list_user_groups(3)] == [g.id]
    assert await store.remove_member(g.id, 3) and not await store.remove_member(g.id, 3)
    assert await store.list_user_groups(3) == []
    await store.rename_group(g.id, "renamed")
    await store.dissolve_group(g.id)
    got = await store.get_group(g.id)
    assert got is not None and (got.name, got.dissolved, got.member_count) == ("renamed", True, 2)


async def test_files(ubackend: Backend) -> None:
    store = await ubackend.users()
    meta = FileMeta(nid(), 1, "a.png", 10, "image/png", "k/a", 1000, 4, 3, "k/t")
    await store.add_file(meta)
    assert await store.get_file(meta.id) == meta
    await store.add_file_ref(meta.id, "d:1:2")
    await store.add_file_ref(meta.id, "d:1:2")
    assert await store.file_convs(meta.id) == ["d:1:2"]


async def test_data_survives_a_restart(ubackend: Backend) -> None:
    store = await ubackend.users()
    u = user("carol")
    await store.create_user(u)
    await ubackend.close(store)
    store = await ubackend.users()
    assert await store.get_user_by_name("carol") == u


def test_every_message_store_is_tierable() -> None:
    for name in MESSAGE_STORES.names():
        cls = MESSAGE_STORES.load(name)
        for method in ("oldest", "import_messages", "delete_messages"):
            assert callable(getattr(cls, method, None)), f"{name} lacks {method}"
