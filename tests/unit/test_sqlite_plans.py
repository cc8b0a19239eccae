"""The SQLite message store keeps only the indexes its queries need: every statement the store runs is traced,
its plan (EXPLAIN QUERY PLAN) must not scan a table of the message path, nor walk an index by a bound alone (a
range with no equality, ``id<?``, is a scan in disguise: the search indexer did that over every message), and
every index must serve some statement. Also: the migration that dropped marks(user_id) on an existing database, and marks kept in memory."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from core.clock import FakeClock
from core.metrics import Metrics
from core.models import DeadLetter, Marks, MessageDraft, MessageKind
from strategies.context import StrategyContext
from strategies.store.config import SqliteStoreConfig
from strategies.store.sqlite.messages import SqliteMessageStore
from strategies.store.sqlite.schema import MESSAGE_SCHEMA

SCANNED_OK = (
    "json_each",
    "dead_letters",
    "search_pending",
    "(subquery-",
    "CONSTANT ROW",
    "VIRTUAL TABLE",
)  # the batch as a JSON array; the DLQ listing pages the
# rowid table; the search queue is read in rowid order, bounded by LIMIT or EXISTS; a subquery's own scans are
# checked; a virtual table (json_each over the caller's windows, an FTS5 MATCH) is its own index
RANGED_OK = (
    "INTEGER PRIMARY KEY",
    "messages_ts",
)  # rowid queues (search, DLQ) up to a bound; tiering by time


def make(tmp_path: Path, **cfg: float) -> SqliteMessageStore:
    return SqliteMessageStore(
        SqliteStoreConfig(path="m.db", **cfg),
        StrategyContext(FakeClock(), Metrics(), tmp_path, "test"),
    )


def draft(i: int, conv: str = "d:1:2") -> MessageDraft:
    return MessageDraft(
        1000 + i, conv, 1, "dev", f"c{i}", MessageKind.TEXT, {"text": str(i)}, 1_000 + i, f"1:dev:c{i}"
    )


async def test_every_statement_uses_an_index_and_every_index_is_used(tmp_path: Path) -> None:
    store = make(tmp_path, marks_flush_ms=0)
    await store.start()
    statements: set[str] = set()

    def trace(conn: sqlite3.Connection) -> None:
        conn.set_trace_callback(statements.add)

    await store._db.writer.run(trace)  # the SQL the store runs
    await store._db.reader.run(trace)
    msgs = [(await store.append(draft(i))).message for i in range(3)]
    await store.append(draft(0))  # a resend: found by its key
    await store.set_marks("d:1:2", 2, delivered=2, read=1)
    await store.get_marks("d:1:2")
    await store.user_marks(2, ["d:1:2", "d:1:3"])
    await store.heads(["d:1:2"])
    await store.messages_after("d:1:2", 0, 10)
    await store.messages_before("d:1:2", 3, 10)
    await store.get_message(msgs[0].id)
    await store.mark_recalled(msgs[1].id)
    await store.add_dead_letter(DeadLetter(1, msgs[0].id, "d:1:2", 1, 2, "dev", 4, "gave up", 5))
    await store.list_dead_letters(10, 0)
    await store.index_pending()  # the search queue -> FTS5 (also what a search drains first)
    await store.search_messages({"d:1:2": 1}, "hello", None, 10)
    await store.search_messages({"d:1:2": 1}, "0", None, 10)  # shorter than a trigram: a bounded LIKE
    old = await store.oldest(2_000, 10)
    await store.delete_messages(old[:1])
    await store.import_messages(old[:1])
    await store.close()

    conn = sqlite3.connect(tmp_path / "m.db")
    used: set[str] = set()
    checked = 0
    for sql in statements:
        if not sql.lstrip().upper().startswith(("SELECT", "INSERT", "UPDATE", "DELETE")):
            continue
        if "'main'.'messages_fts" in sql:
            continue  # FTS5's own statements on its shadow tables

        plan = " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql))
        checked += 1
        for step in plan.split(" | "):
            if step.startswith("SCAN") and not any(ok in step for ok in SCANNED_OK):
                raise AssertionError(f"{sql!r} scans: {plan}")
            bound = step.partition("(")[2]
            if (
                step.startswith("SEARCH")
                and bound
                and "=" not in bound
                and not any(ok in step for ok in RANGED_OK)
            ):
                raise AssertionError(f"{sql!r} walks an index by a bound alone: {plan}")
            for word in step.replace("(", " ").split():
                used.add(word)
    indexes = {
        r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
    }
    conn.close()
    assert checked >= 12
    assert indexes == {"messages_id", "messages_dedup", "messages_ts"}
    assert indexes <= used, f"indexes no statement uses: {indexes - used}"


async def test_migration_drops_the_marks_user_index_of_an_existing_database(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "m.db")
    for version, script in enumerate(MESSAGE_SCHEMA[:2], start=1):
        conn.executescript(script)
        conn.execute(f"PRAGMA user_version = {version}")
    conn.execute("INSERT INTO marks (conv, user_id, delivered, read) VALUES ('d:1:2', 2, 5, 4)")
    conn.commit()
    conn.close()
    store = make(tmp_path)
    await store.start()
    assert await store.user_marks(2, ["d:1:2"]) == {"d:1:2": Marks(5, 4)}
    await store.close()
    conn = sqlite3.connect(tmp_path / "m.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MESSAGE_SCHEMA)
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'marks_user'").fetchone() is None
    conn.close()


async def test_queued_marks_are_read_before_they_are_written_and_written_at_close(tmp_path: Path) -> None:
    store = make(tmp_path, marks_flush_ms=60_000)  # nothing falls due during the test
    await store.start()
    await store.append(draft(1))
    store.queue_marks("d:1:2", 2, delivered=1)
    store.queue_marks("d:1:2", 1, delivered=1, read=1)
    assert await store.get_marks("d:1:2") == {2: Marks(1, 0), 1: Marks(1, 1)}
    assert await store.user_marks(2, ["d:1:2"]) == {"d:1:2": Marks(1, 0)}
    conn = sqlite3.connect(tmp_path / "m.db")
    assert conn.execute("SELECT COUNT(*) FROM marks").fetchone()[0] == 0  # still in memory
    await store.set_marks("d:1:2", 2, delivered=1, read=1)  # awaited: written now, with what is queued
    assert conn.execute("SELECT user_id, delivered, read FROM marks ORDER BY user_id").fetchall() == [
        (1, 1, 1),
        (2, 1, 1),
    ]
    store.queue_marks("d:1:2", 2, delivered=7)
    await store.close()
    assert conn.execute("SELECT delivered FROM marks WHERE user_id = 2").fetchone()[0] == 7
    conn.close()
