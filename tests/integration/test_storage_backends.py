"""The real server on each storage backend: chat, offline sync and history per message store (and MySQL as the
user store), the write fan-out timeline over the wire, and a Redis restart during traffic with Redis-backed
dedup and cache tiers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect

from core.sdk import SendError, WsimClient
from strategies.store import MESSAGE_STORES
from tests.conftest import ServerFactory
from tests.support.brokers import private_redis
from tests.support.helpers import collect, make_friends, texts
from tests.support.services import namespace, require_service
from tests.support.stores import param_backend_config


@contextlib.asynccontextmanager
async def clients(url: str, n: int) -> AsyncIterator[list[WsimClient]]:
    made = [WsimClient(url) for _ in range(n)]
    try:
        for c in made:
            name = namespace("u")
            await c.register(name, "password-123", name)
            await c.connect()
        yield made
    finally:
        for c in made:
            await c.close()


@pytest.fixture(params=MESSAGE_STORES.names())
async def store_overrides(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """Store settings with the message store of this parameter; MySQL also holds the users when it is the
    message store (the plan's hybrid: MySQL for users and groups, MongoDB for messages, uses SQLite users here)."""
    async with param_backend_config(request, tmp_path) as cfg:
        store: dict[str, Any] = {"messages": cfg}
        if request.param == "mysql":
            store["users"] = cfg
        yield {"strategies": {"store": store}}


async def test_chat_sync_and_history_on_each_backend(
    start_server: ServerFactory, store_overrides: dict[str, Any]
) -> None:
    srv = await start_server(store_overrides)
    async with clients(srv.url, 2) as (alice, bob):
        conv = await make_friends(alice, bob)
        acks = [await alice.send(conv, f"m{i}") for i in range(5)]
        assert [a["seq"] for a in acks if a] == [2, 3, 4, 5, 6]
        assert texts(await collect(bob, 5)) == [f"m{i}" for i in range(5)]
        await bob.disconnect()
        for i in range(5, 30):
            await alice.send(conv, f"m{i}")
        again = await alice.send(conv, "dup", cmid="same-cmid")
        dup = await alice.send(conv, "dup", cmid="same-cmid")
        assert again and dup and dup["duplicate"] and dup["seq"] == again["seq"]
        await bob.connect()
        assert texts(await collect(bob, 26)) == [f"m{i}" for i in range(5, 30)] + ["dup"]
        page = await bob.history(conv, limit=10)
        assert [m["seq"] for m in page["messages"]] == list(range(23, 33))
        older = await bob.history(conv, before=23, limit=50)
        assert [m["seq"] for m in older["messages"]] == list(range(1, 23))
        # a group, so membership (the users store) and group system messages go through the backend too
        group = await alice.create_group("g", [bob.user_id])
        gack = await bob.send(group["conv"], "in the group")
        assert gack is not None and gack["seq"] == 2


async def test_write_fanout_timeline_syncs_by_one_inbox_cursor(start_server: ServerFactory) -> None:
    srv = await start_server({"strategies": {"store": {"timeline": {"kind": "write"}}}})
    async with clients(srv.url, 3) as (alice, bob, carol):
        d1 = await make_friends(alice, bob)
        await make_friends(carol, bob)
        group = await alice.create_group("trio", [bob.user_id])
        await bob.disconnect()
        for i in range(3):
            await alice.send(d1, f"d{i}")
            await alice.send(group["conv"], f"g{i}")
        ws_url = srv.url.replace("http", "ws") + "/ws"
        async with connect(ws_url) as raw:
            await raw.send(
                orjson.dumps({"type": "auth", "token": bob.access_token, "device": "inbox-dev"}).decode()
            )
            assert orjson.loads(await raw.recv())["type"] == "auth.ok"
            got: list[dict[str, Any]] = []
            cursor = 0
            while True:
                await raw.send(orjson.dumps({"type": "sync", "inbox": cursor, "limit": 3}).decode())
                while True:
                    frame = orjson.loads(await raw.recv())
                    if frame["type"] == "sync.batch":
                        got += frame["messages"]
                    elif frame["type"] == "sync.done":
                        break
                assert frame["inbox"] >= cursor
                cursor = frame["inbox"]
                if not frame["more"]:
                    break

        # bob's inbox holds the friendship and group events and the six messages, each once and, per
        # conversation, in seq order (a page is grouped by conversation, like a conversation-cursor sync)
        def chat(conv: str) -> list[str]:
            return [m["body"]["text"] for m in got if m["conv"] == conv and m["kind"] == "text"]

        assert chat(d1) == ["d0", "d1", "d2"]
        assert chat(group["conv"]) == ["g0", "g1", "g2"]
        assert sum(1 for m in got if m["kind"] == "system") == 3
        for conv in {m["conv"] for m in got}:
            seqs = [m["seq"] for m in got if m["conv"] == conv]
            assert seqs == sorted(seqs)
        assert len({m["id"] for m in got}) == len(got)
        # an ordinary device (per-conversation cursors) is unaffected by the inbox model
        await bob.connect()
        # (its queue still holds the group.created event it received before going offline)
        assert sorted(t for t in texts(await collect(bob, 7)) if t) == ["d0", "d1", "d2", "g0", "g1", "g2"]


@pytest.mark.slow
async def test_redis_restart_during_traffic_loses_nothing_and_repeats_no_seq(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    """Dedup window and cache tiers in a private Redis that is killed and restarted (empty) while clients send and
    resend: every message is stored once, every seq once, and every resend gets the original seq."""
    require_service("redis")
    async with private_redis(tmp_path) as r:
        prefix = namespace("wsimt") + ":"
        l2 = {"kind": "l2", "url": r.url, "prefix": prefix}
        srv = await start_server(
            {
                "strategies": {
                    "dedup": {"kind": "redis", "url": r.url, "prefix": prefix},
                    "cache": {"kind": "l1+l2", "l2": l2},
                }
            }
        )
        async with clients(srv.url, 2) as (alice, bob):
            conv = await make_friends(alice, bob)
            acks: dict[str, int] = {}
            failures = 0

            async def send(i: int) -> None:
                nonlocal failures
                cmid = f"c{i}"
                for _ in range(20):
                    try:
                        a = await alice.send(conv, f"m{i}", cmid=cmid)
                    except SendError:
                        failures += 1
                        await asyncio.sleep(0.05)
                        continue
                    assert a is not None
                    # resend the same cmid: must answer with the same seq, Redis or not
                    b = await alice.send(conv, f"m{i}", cmid=cmid)
                    assert b is not None and b["seq"] == a["seq"] and b["duplicate"]
                    acks[cmid] = a["seq"]
                    return
                raise AssertionError(f"message {i} never acknowledged")

            first = [asyncio.create_task(send(i)) for i in range(40)]
            await asyncio.sleep(0.05)
            r.crash()
            second = [asyncio.create_task(send(i)) for i in range(40, 80)]
            await asyncio.gather(*first)
            await r.start()
            third = [asyncio.create_task(send(i)) for i in range(80, 120)]
            await asyncio.gather(*second, *third)
            seqs = sorted(acks.values())
            assert len(seqs) == 120 and len(set(seqs)) == 120
            page = await alice.history(conv, limit=200)
            stored = [m for m in page["messages"] if m["kind"] == "text"]
            assert sorted(m["seq"] for m in stored) == seqs
            assert sorted(m["body"]["text"] for m in stored) == sorted(f"m{i}" for i in range(120))
            assert [m["seq"] for m in page["messages"]] == list(range(1, 122))


async def test_in_server_tier_schedule_keeps_history_whole(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    """Tiering inside a running server, with ages shrunk to milliseconds: messages leave the hot store for warm
    and cold while the REST history, a new device's sync and new sends go on as if nothing moved."""
    day_s = 86_400
    srv = await start_server(
        {
            "limits": {"recall_window_s": 0.3},  # hot_days may not be shorter (config validation)
            "strategies": {
                "store": {
                    "tiering": {
                        "enabled": True,
                        "hot_days": 0.3 / day_s,
                        "warm_days": 0.6 / day_s,
                        "schedule_s": 0.05,
                        "batch": 7,
                        "cold": {"kind": "local", "path": str(tmp_path / "archive")},
                    }
                }
            },
        }
    )
    store: Any = srv.node.messages_store
    async with clients(srv.url, 2) as (alice, bob):
        conv = await make_friends(alice, bob)
        for i in range(30):
            await alice.send(conv, f"m{i}")
        for _ in range(500):  # until everything older than 0.6 s is archived (polls state, ~1 s)
            hot = await store.hot.messages_after(conv, 0, 100)
            warm = await store.warm.messages_after(conv, 0, 100)
            if not hot and not warm:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the scheduled tier job did not archive the conversation")
        assert list((tmp_path / "archive").rglob("*.jsonl.gz"))
        page = await bob.history(conv, limit=10)
        assert [m["seq"] for m in page["messages"]] == list(range(22, 32)) and page["has_older"]
        older = await bob.history(conv, before=22, limit=100)
        assert [m["seq"] for m in older["messages"]] == list(range(1, 22))
        ack = await alice.send(conv, "after archiving")
        assert ack is not None and ack["seq"] == 32
        fresh = WsimClient(srv.url)
        try:
            await fresh.login(bob.user["username"], "password-123")  # type: ignore[index]
            await fresh.connect()
            got = await collect(fresh, 32, timeout=20)  # conversation-less device: recent history, from cold
            assert [m["seq"] for m in got][-3:] == [30, 31, 32]
        finally:
            await fresh.close()
