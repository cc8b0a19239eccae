"""The SQL both relational stores share (strategies/store/sql): the group commit's numbering step, the generator
transactions as SQLite drives them, and the spelling helpers. The stores' behaviour is the contract suite's."""

from __future__ import annotations

import dataclasses
import sqlite3
from functools import partial

import pytest

from core.models import DeadLetter, FileMeta, FriendRequest, Message, MessageDraft, MessageKind, User
from strategies.store.base import DuplicateError
from strategies.store.mysql.db import _native
from strategies.store.sql import rows
from strategies.store.sql.dialect import MYSQL, SQLITE, Stmt, Tx
from strategies.store.sql.messages import INSERT_COLS, number
from strategies.store.sqlite.db import _drive, _transaction


def draft(i: int, conv: str, key: str | None) -> MessageDraft:
    return MessageDraft(i, conv, 7, "dev", f"c{i}", MessageKind.TEXT, {"text": str(i)}, 1_000 + i, key)


def test_number_continues_each_conversation_and_a_duplicate_takes_no_number() -> None:
    stored = Message(1, "a", 4, 7, "dev", "c1", MessageKind.TEXT, {"text": "old"}, 999)
    last = {"a": 4}
    existing = {"k1": stored}
    drafts = [
        draft(10, "a", "k1"),  # stored before: the original comes back
        draft(11, "a", "k2"),
        draft(12, "b", None),  # no key: always stored
        draft(13, "a", "k2"),  # a second copy in the same batch
        draft(14, "a", "k3"),
    ]
    results, inserts, heads = number(drafts, last, existing)
    assert [(r.message.id, r.message.seq, r.created) for r in results] == [
        (1, 4, False),
        (11, 5, True),
        (12, 1, True),
        (11, 5, False),
        (14, 6, True),
    ]
    assert [(r[0], r[1], r[2]) for r in inserts] == [("a", 5, 11), ("b", 1, 12), ("a", 6, 14)]
    assert len(inserts[0]) == len(INSERT_COLS.split(","))
    assert {c: m.seq for c, m in heads.items()} == {"a": 6, "b": 1}
    assert last == {"a": 6, "b": 1}


@pytest.mark.parametrize(
    ("model", "cols"),
    [
        (User, rows.USER_COLS),
        (FileMeta, rows.FILE_COLS),
        (FriendRequest, rows.REQUEST_COLS),
        (DeadLetter, rows.DEAD_LETTER_COLS),
    ],
)
def test_every_written_column_is_a_field_of_its_model(model: type, cols: str) -> None:
    fields = {f.name for f in dataclasses.fields(model)}
    assert {c.strip() for c in cols.split(",")} <= fields


def test_values_follow_the_column_order_not_the_field_order() -> None:
    user = User(1, "ann", "Ann", "h", 5, bio="hi", avatar_file=9)
    assert rows.values(user, rows.USER_COLS) == (1, "ann", "Ann", "h", "hi", 9, 5)
    assert rows.user(rows.values(user, rows.USER_COLS)) == user
    assert rows.insert("t", "a, b, c") == "INSERT INTO t (a, b, c) VALUES (?, ?, ?)"


def test_dialects_spell_the_shared_clauses() -> None:
    assert SQLITE.insert_ignore("id") == " ON CONFLICT DO NOTHING"
    assert MYSQL.insert_ignore("id") == " ON DUPLICATE KEY UPDATE id = id"
    assert SQLITE.on_conflict("conv") + f"n = {SQLITE.greatest}(n, {SQLITE.new('n')})" == (
        " ON CONFLICT(conv) DO UPDATE SET n = MAX(n, excluded.n)"
    )
    assert MYSQL.on_conflict("conv") + f"n = {MYSQL.greatest}(n, {MYSQL.new('n')})" == (
        " ON DUPLICATE KEY UPDATE n = GREATEST(n, VALUES(n))"
    )
    assert _native("SELECT a FROM t WHERE b = ? AND c IN (?,?) AND d = %s") == (
        "SELECT a FROM t WHERE b = %s AND c IN (%s,%s) AND d = %s"
    )


def _conn() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    return conn


def test_sqlite_drives_a_transaction_and_sends_each_statement_its_result() -> None:
    conn = _conn()

    def tx() -> Tx[tuple[int, int, list[str]]]:
        added = yield Stmt(
            f"INSERT INTO t (k, v) VALUES (?, ?){SQLITE.insert_ignore('k')}",
            [(1, "a"), (2, "b"), (1, "x")],
            many=True,
        )
        changed = yield Stmt("UPDATE t SET v = 'c' WHERE k >= ?", (2,))
        found = yield Stmt("SELECT v FROM t ORDER BY k")
        return added.rowcount, changed.rowcount, [r[0] for r in found.rows]

    assert _transaction(partial(_drive, tx), conn) == (2, 1, ["a", "c"])


def test_a_failing_sqlite_transaction_leaves_nothing_behind() -> None:
    conn = _conn()

    def tx() -> Tx[None]:
        yield Stmt("INSERT INTO t (k, v) VALUES (?, ?)", (1, "a"))
        yield Stmt("INSERT INTO t (k, v) VALUES (?, ?)", (1, "b"))  # the key again

    with pytest.raises(DuplicateError):
        _transaction(partial(_drive, tx), conn)
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 0
