"""The SQLite message store: group commit in the writer thread, FTS5 search indexed off the ack path; reads, dead
letters and tier moves are the shared SQL (strategies/store/sql/messages.py).

A group commit is one function run in the writer thread: look up which dedup keys exist, read the conversations'
counters, number the new messages, insert them and advance the counters, all inside ``BEGIN IMMEDIATE``; a
duplicate never consumes a number.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson

from core.models import AppendResult, Message, MessageDraft
from strategies._aio import cancel_and_wait
from strategies.context import StrategyContext
from strategies.store.base import DuplicateError, StoreUnavailable, TierableStore
from strategies.store.config import SqliteStoreConfig
from strategies.store.group_commit import GroupCommit, MarksBatch
from strategies.store.sql import rows
from strategies.store.sql.dialect import SQLITE, like_escape
from strategies.store.sql.messages import INSERT_COLS, SqlMessageStore, number
from strategies.store.sqlite.db import Db, resolve
from strategies.store.sqlite.schema import MESSAGE_SCHEMA

log = logging.getLogger(__name__)


def _index_pending(conn: sqlite3.Connection, limit: int) -> int:
    """Index up to ``limit`` queued messages (one write transaction); returns how many were taken off the queue.
    Recalled or moved-away messages are skipped (the join); one already indexed is never indexed twice."""
    row = conn.execute(
        "SELECT MAX(id), COUNT(*) FROM (SELECT id FROM search_pending ORDER BY id LIMIT ?)", (limit,)
    ).fetchone()
    if not row or row[0] is None:
        return 0
    top = int(row[0])
    # CROSS JOIN makes the queue the outer loop (SQLite keeps the written order of a CROSS JOIN). With a plain JOIN
    # the planner walked ``messages_id`` over every id below ``top``, i.e. the whole table for each batch: 15 us a
    # message at 10,000 messages, 650 us at 400,000 (issue 11's profile: the largest cost on the writer thread).
    insert = (
        "INSERT INTO messages_fts (rowid, text) SELECT m.id, json_extract(m.body, '$.text') "
        "FROM search_pending p CROSS JOIN messages m ON m.id = p.id WHERE p.id <= ? AND m.recalled = 0 "
        "AND json_type(m.body, '$.text') = 'text'"
    )
    try:
        conn.execute(insert, (top,))
    except sqlite3.IntegrityError:
        # Cannot happen by construction (a message leaves the index whenever it leaves ``messages``), but an
        # index row left by hand must not stall the queue forever; the guard costs ~3 us a message, so only here.
        conn.execute(insert + " AND NOT EXISTS (SELECT 1 FROM messages_fts f WHERE f.rowid = m.id)", (top,))
    conn.execute("DELETE FROM search_pending WHERE id <= ?", (top,))
    return int(row[1])


# Queries shorter than the trigram cannot use the index: they scan the caller's conversations with LIKE
# (documented in docs/protocol.md; the scan is bounded to the windows the caller may read).
TRIGRAM = 3


# The batch's keys and conversations go in as one JSON array: one statement text (prepared once) for any batch.
_EXISTING_KEYS = (
    f"SELECT {rows.MESSAGE_COLS}, dedup_key FROM messages WHERE dedup_key IN (SELECT value FROM json_each(?))"
)
_COUNTERS = "SELECT json_group_object(conv, last_seq) FROM conversations WHERE conv IN (SELECT value FROM json_each(?))"
# Batched writes are multi-row statements, not executemany: sqlite3 releases and re-takes the GIL around every
# step, and on a busy server each re-take waits for the event loop's thread, so executemany of a 1,000-row group
# commit queued behind the loop a thousand times (measured: commits of hundreds of ms at 1,500 msgs/s). One
# statement per table is one step.
_INSERT_MESSAGE = (
    f"INSERT INTO messages ({INSERT_COLS}) VALUES ",
    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "",
)
# Sequence numbers are assigned in the writer thread from this row, inside the write transaction; the row is the
# durable counter (tiering may move messages away, the counter stays), so a seq never repeats or goes back.
# (last_id and last_ts are no longer written: nothing reads them; heads() joins the message at last_seq.)
_UPSERT_HEAD = (
    "INSERT INTO conversations (conv, last_seq) VALUES ",
    "(?, ?)",
    " ON CONFLICT(conv) DO UPDATE SET last_seq = excluded.last_seq",
)
_UPSERT_MARKS = (
    "INSERT INTO marks (conv, user_id, delivered, read) VALUES ",
    "(?, ?, ?, ?)",
    " ON CONFLICT(conv, user_id) DO UPDATE SET delivered = MAX(delivered, excluded.delivered), "
    "read = MAX(read, excluded.read)",
)
_MAX_PARAMS = 30_000  # below SQLite's default limit of 32,766 bound parameters per statement


def _insert_rows(
    conn: sqlite3.Connection, sql: tuple[str, str, str], values: Sequence[Sequence[Any]]
) -> None:
    """``INSERT ... VALUES (..), (..), ...`` in as few statements as the parameter limit allows.

    One statement per batch size, not fixed-size chunks: every statement is one more GIL hand-off between the writer
    thread and the event loop (see above), and sqlite3's statement cache (128) already holds the usual sizes
    (docs/performance.md: fixed sizes measured no cheaper)."""
    head, row, tail = sql
    if not values:
        return
    per = max(1, _MAX_PARAMS // len(values[0]))
    for i in range(0, len(values), per):
        chunk = values[i : i + per]
        conn.execute(head + ",".join([row] * len(chunk)) + tail, [v for r in chunk for v in r])


class SqliteMessageStore(SqlMessageStore):
    """Messages, receipts and dead letters in SQLite, with group commit (see the module docstring)."""

    _db: Db

    def __init__(self, config: SqliteStoreConfig, ctx: StrategyContext) -> None:
        self._db = Db(resolve(config.path, ctx), config)
        self._d = SQLITE
        self._metrics = ctx.metrics
        self._gc = GroupCommit(
            "sqlite",
            self._commit,
            config.max_batch,
            ctx.metrics,
            marks_delay_s=config.marks_flush_ms / 1000,
            commit_window_s=config.commit_window_ms / 1000,
        )
        self._clock = ctx.clock
        self._index_delay_s = config.search_index_delay_ms / 1000
        self._index_max_lag_s = config.search_index_max_lag_ms / 1000
        self._index_batch = config.search_index_batch
        self._last_append = self._last_index = ctx.clock.monotonic()
        self._indexer: asyncio.Task[None] | None = None
        self._index_lock = asyncio.Lock()

    async def start(self) -> None:
        await self._db.open(MESSAGE_SCHEMA)
        self._gc.start()
        self._indexer = asyncio.create_task(self._index_loop(), name="sqlite-search-index")

    async def close(self) -> None:
        await cancel_and_wait(self._indexer)
        self._indexer = None
        await self._gc.close()
        await self._db.close()

    # ---------------------------------------------------------------- search index (off the ack path)
    async def index_pending(self) -> int:
        """Drain the search queue in batches; returns how many messages were taken off it."""
        total = 0
        async with self._index_lock:
            # Asked on the reader (a WAL snapshot): an empty queue costs no write transaction.
            if not (await self._db.one("SELECT EXISTS (SELECT 1 FROM search_pending)"))[0]:
                return 0
            while True:
                with self._metrics.store_op("sqlite", "search_index"):
                    n = await self._db.write(partial(_index_pending, limit=self._index_batch))
                total += n
                if n < self._index_batch:
                    return total

    async def _index_loop(self) -> None:
        """Index in the writer's idle time (no append for a delay), or at the latest every max lag: indexing a
        burst while it is being written would compete with its commits for the writer and the CPU."""
        while True:
            await self._clock.sleep(self._index_delay_s)
            now = self._clock.monotonic()
            if (
                now - self._last_append < self._index_delay_s
                and now - self._last_index < self._index_max_lag_s
            ):
                continue
            try:
                await self.index_pending()
                self._last_index = self._clock.monotonic()
            except (StoreUnavailable, DuplicateError) as exc:
                log.warning("search index: %s; retried at the next run", exc)

    # ---------------------------------------------------------------- group commit
    async def append(self, draft: MessageDraft) -> AppendResult:
        self._last_append = self._clock.monotonic()
        return await self._gc.append(draft)

    async def _commit(self, drafts: list[MessageDraft], marks: MarksBatch) -> list[AppendResult]:
        return await self._db.write(lambda conn: self._write_batch(conn, drafts, marks))

    @staticmethod
    def _write_batch(
        conn: sqlite3.Connection,
        drafts: list[MessageDraft],
        marks: dict[tuple[str, int], list[int]],
    ) -> list[AppendResult]:
        """One transaction (runs in the writer thread, inside BEGIN IMMEDIATE, so no other process writes)."""
        results: list[AppendResult] = []
        if drafts:
            keys = [d.dedup_key for d in drafts if d.dedup_key is not None]
            existing: dict[str, Message] = {}
            if keys:
                found = conn.execute(_EXISTING_KEYS, (orjson.dumps(keys).decode(),)).fetchall()
                existing = {row[10]: rows.message(row) for row in found}
            convs = list({d.conv for d in drafts})
            # one result row (one step), however many conversations the batch touches
            row = conn.execute(_COUNTERS, (orjson.dumps(convs).decode(),)).fetchone()
            last: dict[str, int] = orjson.loads(row[0]) if row and row[0] else {}
            results, inserts, heads = number(drafts, last, existing)
            _insert_rows(conn, _INSERT_MESSAGE, inserts)
            _insert_rows(conn, _UPSERT_HEAD, [(c, m.seq) for c, m in heads.items()])
        if marks:
            _insert_rows(conn, _UPSERT_MARKS, [(conv, user, v[0], v[1]) for (conv, user), v in marks.items()])
        return results

    # ---------------------------------------------------------------- search
    async def _search(
        self, windows: Mapping[str, int], query: str, before_id: int, limit: int
    ) -> list[Message]:
        if len(query) >= TRIGRAM:
            await (
                self.index_pending()
            )  # what is committed is searchable: the queue lags commits, never searches
        cols = ", ".join(f"m.{c.strip()}" for c in rows.MESSAGE_COLS.split(","))
        # The windows travel as one JSON object (conv -> first readable seq): one parameter, however many.
        params: list[Any] = [orjson.dumps(dict(windows)).decode()]
        if len(query) >= TRIGRAM:
            source = "messages_fts f JOIN messages m ON m.id = f.rowid"
            match = "messages_fts MATCH ?"
            params.append('"' + query.replace('"', '""') + '"')  # one phrase: a substring, operators inert
        else:
            source = "messages m"
            match = "json_extract(m.body, '$.text') LIKE ? ESCAPE '\\'"
            params.append(f"%{like_escape(query)}%")
        params += [before_id, limit]
        with self._metrics.store_op("sqlite", "search"):
            found = await self._db.all(
                f"SELECT {cols} FROM {source} JOIN json_each(?1) w ON w.key = m.conv "
                f"WHERE {match.replace('?', '?2')} AND m.seq >= w.value AND m.recalled = 0 AND m.id < ?3 "
                "ORDER BY m.id DESC LIMIT ?4",
                params,
            )
        return [rows.message(r) for r in found]


if TYPE_CHECKING:  # mypy checks that the class meets the role it is registered for
    _meets: type[TierableStore] = SqliteMessageStore
