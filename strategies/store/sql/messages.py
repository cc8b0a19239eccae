"""The message store's reads, dead letters and tier moves: the same SQL on SQLite and MySQL.

The write path is not here: each backend's group commit allocates sequence numbers its own way (SQLite in its
writer thread under ``BEGIN IMMEDIATE`` with multi-row statements; MySQL by locking the conversations' rows in
sorted order), and so does search (FTS5 vs a generated column with an ngram index).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from core.metrics import Metrics
from core.models import AppendResult, ConversationHead, DeadLetter, Marks, Message, MessageDraft
from strategies.store.group_commit import GroupCommitted
from strategies.store.sql import rows
from strategies.store.sql.dialect import Database, Dialect, Stmt, Tx, chunks, placeholders

_IN_CHUNK = 400  # keys per IN (...) list: below SQLite's bound-variable limit, a bounded MySQL statement
_DELETE_CHUNK = 1000


def number(
    drafts: Sequence[MessageDraft], last: dict[str, int], existing: dict[str, Message]
) -> tuple[list[AppendResult], list[tuple[Any, ...]], dict[str, Message]]:
    """A group commit's decisions, in the backend's write transaction: each draft whose dedup key is not in
    ``existing`` (stored before, or earlier in this batch) gets its conversation's next seq after ``last``. Returns
    one result per draft, the message rows to insert (``INSERT_COLS`` order) and each conversation's new head;
    ``last`` and ``existing`` are updated. A duplicate never consumes a number. Called once per batch (hot path:
    nothing here may cost more than the row itself)."""
    results: list[AppendResult] = []
    inserts: list[tuple[Any, ...]] = []
    heads: dict[str, Message] = {}
    for d in drafts:
        key = d.dedup_key
        if key is not None and key in existing:
            results.append(AppendResult(existing[key], False))
            continue
        seq = last.get(d.conv, 0) + 1
        last[d.conv] = seq
        msg = Message(d.id, d.conv, seq, d.sender, d.device, d.cmid, d.kind, d.body, d.ts_ms)
        if key is not None:
            existing[key] = msg  # a second copy in the same batch is its duplicate
        inserts.append(
            (
                d.conv,
                seq,
                d.id,
                d.sender,
                d.device,
                d.cmid,
                d.kind.value,
                orjson.dumps(d.body).decode(),
                d.ts_ms,
                key,
            )
        )
        heads[d.conv] = msg
        results.append(AppendResult(msg, True))
    return results, inserts, heads


INSERT_COLS = "conv, seq, id, sender, device, cmid, kind, body, ts, dedup_key"


def _raise(out: dict[Any, Marks], key: Any, delivered: int, read: int) -> None:
    cur = out.get(key)
    if cur is None:
        out[key] = Marks(delivered, read)
    elif delivered > cur.delivered or read > cur.read:
        out[key] = Marks(max(cur.delivered, delivered), max(cur.read, read))


class SqlMessageStore(GroupCommitted, ABC):
    """A backend sets ``_db``, ``_d``, ``_metrics`` and ``_gc``, and says where tables live (``_g``) and how its
    marks columns are named (``_MARKS``)."""

    _db: Database
    _d: Dialect
    _metrics: Metrics
    _MARKS = "delivered, read"

    def _g(self, table: str) -> str:
        return table

    # ---------------------------------------------------------------- reads
    async def get_message(self, msg_id: int) -> Message | None:
        row = await self._db.one(
            f"SELECT {rows.MESSAGE_COLS} FROM {self._g('messages')} WHERE id = ?", (msg_id,)
        )
        return rows.message(row) if row else None

    async def messages_after(self, conv: str, after_seq: int, limit: int) -> list[Message]:
        with self._metrics.store_op(self._d.name, "messages_after"):
            found = await self._db.all(
                f"SELECT {rows.MESSAGE_COLS} FROM {self._g('messages')} WHERE conv = ? AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (conv, after_seq, limit),
            )
        return [rows.message(r) for r in found]

    async def messages_before(self, conv: str, before_seq: int, limit: int) -> list[Message]:
        with self._metrics.store_op(self._d.name, "messages_before"):
            found = await self._db.all(
                f"SELECT {rows.MESSAGE_COLS} FROM {self._g('messages')} WHERE conv = ? AND seq < ? "
                "ORDER BY seq DESC LIMIT ?",
                (conv, before_seq, limit),
            )
        return [rows.message(r) for r in reversed(found)]

    async def heads(self, convs: Iterable[str]) -> dict[str, ConversationHead]:
        out: dict[str, ConversationHead] = {}
        cols = ", ".join(f"m.{c.strip()}" for c in rows.MESSAGE_COLS.split(","))
        # last_seq > 0: MySQL creates a conversation's row (seq 0) to lock it before its first message commits
        for chunk in chunks(sorted(set(convs)), _IN_CHUNK):
            found = await self._db.all(
                f"SELECT c.conv, c.last_seq, {cols} FROM {self._g('conversations')} c "
                f"LEFT JOIN {self._g('messages')} m ON m.conv = c.conv AND m.seq = c.last_seq "
                f"WHERE c.conv IN ({placeholders(len(chunk))}) AND c.last_seq > 0",
                chunk,
            )
            for r in found:
                last = rows.message(r[2:]) if r[2] is not None else None
                out[r[0]] = ConversationHead(r[0], r[1], last)
        return out

    async def mark_recalled(self, msg_id: int) -> bool:
        n = await self._db.execute(
            f"UPDATE {self._g('messages')} SET recalled = 1, body = '{{}}' WHERE id = ? AND recalled = 0",
            (msg_id,),
        )
        return n > 0

    async def get_marks(self, conv: str) -> dict[int, Marks]:
        found = await self._db.all(
            f"SELECT user_id, {self._MARKS} FROM {self._g('marks')} WHERE conv = ?", (conv,)
        )
        out = {r[0]: Marks(r[1], r[2]) for r in found}
        for pending in self._gc.pending_marks():  # queued marks not written yet
            for (c, user), (delivered, read) in list(pending.items()):
                if c == conv:
                    _raise(out, user, delivered, read)
        return out

    async def user_marks(self, user_id: int, convs: Iterable[str]) -> dict[str, Marks]:
        keys = sorted(set(convs))
        out: dict[str, Marks] = {}
        for chunk in chunks(keys, _IN_CHUNK):
            found = await self._db.all(
                f"SELECT conv, {self._MARKS} FROM {self._g('marks')} "
                f"WHERE user_id = ? AND conv IN ({placeholders(len(chunk))})",
                (user_id, *chunk),
            )
            out.update((r[0], Marks(r[1], r[2])) for r in found)
        for pending in self._gc.pending_marks():
            for conv in keys:
                v = pending.get((conv, user_id))
                if v is not None:
                    _raise(out, conv, v[0], v[1])
        return out

    # ---------------------------------------------------------------- search
    async def search_messages(
        self, windows: Mapping[str, int], query: str, before_id: int | None, limit: int
    ) -> list[Message]:
        if not windows or not query:
            return []
        return await self._search(windows, query, 2**63 - 1 if before_id is None else before_id, limit)

    @abstractmethod
    async def _search(
        self, windows: Mapping[str, int], query: str, before_id: int, limit: int
    ) -> list[Message]:
        """The backend's search over a non-empty ``windows`` for a non-empty ``query`` (ids below ``before_id``)."""

    # ---------------------------------------------------------------- dead letters
    async def add_dead_letter(self, letter: DeadLetter) -> None:
        await self._db.execute(
            rows.insert(self._g("dead_letters"), rows.DEAD_LETTER_COLS),
            rows.values(letter, rows.DEAD_LETTER_COLS),
        )

    async def list_dead_letters(self, limit: int, offset: int) -> list[DeadLetter]:
        found = await self._db.all(
            f"SELECT {rows.DEAD_LETTER_COLS} FROM {self._g('dead_letters')} ORDER BY id DESC LIMIT ? OFFSET ?",
            (limit, offset),
        )
        return [DeadLetter(*r) for r in found]

    async def count_dead_letters(self) -> int:
        row = await self._db.one(f"SELECT COUNT(*) FROM {self._g('dead_letters')}")
        return int(row[0]) if row else 0

    # ---------------------------------------------------------------- tiering (TierableStore)
    async def oldest(self, before_ts_ms: int, limit: int) -> list[Message]:
        found = await self._db.all(
            f"SELECT {rows.MESSAGE_COLS} FROM {self._g('messages')} WHERE ts < ? ORDER BY ts, id LIMIT ?",
            (before_ts_ms, limit),
        )
        return [rows.message(r) for r in found]

    async def import_messages(self, messages: Sequence[Message]) -> int:
        """Copies keep their id and seq; one already here (same id or same (conv, seq)) is skipped. The counter
        row only moves forward, so importing never lowers a conversation's next seq."""
        if not messages:
            return 0
        tops: dict[str, int] = {}
        for m in messages:
            tops[m.conv] = max(tops.get(m.conv, 0), m.seq)
        d = self._d

        def run() -> Tx[int]:
            # rowcount counts the rows this statement inserted (not those triggers write, nor skipped copies)
            done = yield Stmt(
                f"INSERT INTO {self._g('messages')} ({rows.IMPORT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                f"{d.insert_ignore('id')}",
                [rows.message_row(m) for m in messages],
                many=True,
            )
            yield Stmt(
                f"INSERT INTO {self._g('conversations')} (conv, last_seq) VALUES (?, ?){d.on_conflict('conv')}"
                f"last_seq = {d.greatest}(last_seq, {d.new('last_seq')})",
                sorted(tops.items()),
                many=True,
            )
            return done.rowcount

        return await self._db.tx(run)

    async def delete_messages(self, messages: Sequence[Message]) -> int:
        if not messages:
            return 0
        ids = [m.id for m in messages]

        def run() -> Tx[int]:
            total = 0
            for chunk in chunks(ids, _DELETE_CHUNK):
                done = yield Stmt(
                    f"DELETE FROM {self._g('messages')} WHERE id IN ({placeholders(len(chunk))})", chunk
                )
                total += done.rowcount
            return total

        return await self._db.tx(run)
