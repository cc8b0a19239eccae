"""Backend specifics of message search beyond the shared contract: the migrations make a database that existed
before them searchable (SQLite, MySQL), and SQLite queues new messages at commit and indexes them in batches off
the ack path (docs/protocol.md "Search")."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiomysql

from core.models import MessageDraft, MessageKind
from strategies.store.config import MysqlStoreConfig, SqliteStoreConfig
from strategies.store.mysql.messages import MysqlMessageStore
from strategies.store.mysql.schema import message_migrations
from strategies.store.sqlite.db import split_sql
from strategies.store.sqlite.messages import SqliteMessageStore
from strategies.store.sqlite.schema import MESSAGE_SCHEMA
from tests.support.stores import backend_config, context


def store(tmp_path: Path, **kw: int) -> SqliteMessageStore:
    return SqliteMessageStore(SqliteStoreConfig(path=str(tmp_path / "m.db"), **kw), context(tmp_path))


def draft(i: int, text: str) -> MessageDraft:
    return MessageDraft(
        i, "g:1", 7, "dev", f"c{i}", MessageKind.TEXT, {"text": text}, 1000 + i, f"7:dev:c{i}"
    )


async def test_migration_indexes_messages_stored_before_it(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    for i, script in enumerate(MESSAGE_SCHEMA[:2], start=1):  # a database at version 2, with messages
        for statement in split_sql(script):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {i}")
    conn.execute(
        "INSERT INTO messages (conv, seq, id, sender, device, cmid, kind, body, ts) VALUES "
        "('g:1', 1, 11, 7, 'd', 'a', 'text', '{\"text\": \"旧消息里的关键词\"}', 1), "
        "('g:1', 2, 12, 7, 'd', 'b', 'text', '{}', 2), "
        "('g:1', 3, 13, 7, 'd', 'c', 'system', '{\"event\": \"group.created\"}', 3)"
    )
    conn.execute("INSERT INTO conversations (conv, last_seq) VALUES ('g:1', 3)")
    conn.close()
    s = store(tmp_path)
    await s.start()
    try:
        assert [m.id for m in await s.search_messages({"g:1": 1}, "关键词", None, 10)] == [11]
        assert [m.id for m in await s.search_messages({"g:1": 1}, "关键", None, 10)] == [11]
        assert (await s.append(draft(14, "新的关键词"))).message.seq == 4
        assert [m.id for m in await s.search_messages({"g:1": 1}, "关键词", None, 10)] == [14, 11]
    finally:
        await s.close()


async def test_commits_queue_and_the_indexer_drains_in_batches(tmp_path: Path) -> None:
    s = store(tmp_path, search_index_batch=3, search_index_delay_ms=60_000)  # the loop never runs here
    await s.start()
    try:
        for i in range(1, 8):
            await s.append(draft(i, f"第{i}条 searchable"))
        queued = await s._db.one("SELECT COUNT(*) FROM search_pending")
        indexed = await s._db.one("SELECT COUNT(*) FROM messages_fts")
        assert (queued[0], indexed[0]) == (7, 0)  # nothing indexed inside the commits
        await s.mark_recalled(3)  # recalled while queued: never indexed
        assert await s.index_pending() == 7  # three batches of at most 3
        assert (await s._db.one("SELECT COUNT(*) FROM search_pending"))[0] == 0
        assert (await s._db.one("SELECT COUNT(*) FROM messages_fts"))[0] == 6
        assert await s.index_pending() == 0
        got = await s.search_messages({"g:1": 1}, "searchable", None, 10)
        assert [m.id for m in got] == [7, 6, 5, 4, 2, 1]
    finally:
        await s.close()


async def test_a_stray_index_row_does_not_stall_the_queue(tmp_path: Path) -> None:
    s = store(tmp_path, search_index_delay_ms=60_000)
    await s.start()
    try:
        await s.append(draft(1, "already indexed by hand"))
        await s.append(draft(2, "queued as usual"))
        await s._db.execute("INSERT INTO messages_fts (rowid, text) VALUES (1, 'already indexed by hand')")
        assert await s.index_pending() == 2
        assert [m.id for m in await s.search_messages({"g:1": 1}, "indexed", None, 10)] == [1]
        assert [m.id for m in await s.search_messages({"g:1": 1}, "as usual", None, 10)] == [2]
    finally:
        await s.close()


async def test_mysql_migration_makes_old_messages_searchable(tmp_path: Path) -> None:
    async with backend_config("mysql", tmp_path, None) as cfg:
        db = cfg["dsn"].rsplit("/", 1)[1]
        conn = await aiomysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
        try:
            async with conn.cursor() as cur:  # a database at version 1 (before search), with a message
                await cur.execute(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4")
                await cur.execute(f"USE `{db}`")
                await cur.execute(
                    "CREATE TABLE wsim_meta (k VARCHAR(64) PRIMARY KEY, v VARCHAR(255) NOT NULL)"
                )
                for sql in message_migrations("")[0]:
                    await cur.execute(sql)
                await cur.execute("INSERT INTO wsim_meta (k, v) VALUES ('messages_version', '1')")
                await cur.execute(
                    "INSERT INTO messages (conv, seq, id, sender, device, cmid, kind, body, ts) VALUES "
                    "('g:1', 1, 11, 7, 'd', 'a', 'text', %s, 1)",
                    ('{"text": "旧消息里的关键词 Old"}',),
                )
                await cur.execute("INSERT INTO conversations (conv, last_seq) VALUES ('g:1', 1)")
        finally:
            conn.close()
        s = MysqlMessageStore(MysqlStoreConfig(dsn=cfg["dsn"]), context(tmp_path))
        await s.start()
        try:
            for q in ("关键词", "词", "old"):
                assert [m.id for m in await s.search_messages({"g:1": 1}, q, None, 10)] == [11]
            assert (await s.append(draft(14, "新的关键词"))).message.seq == 2
            assert [m.id for m in await s.search_messages({"g:1": 1}, "关键词", None, 10)] == [14, 11]
        finally:
            await s.close()
