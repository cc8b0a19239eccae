"""The MySQL message store: group commit by locking the conversations' rows, search over a generated column (with a
FULLTEXT ngram index where the server has the parser); reads, dead letters and tier moves are the shared SQL
(strategies/store/sql/messages.py)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiomysql

from core.models import AppendResult, Message, MessageDraft
from strategies.context import StrategyContext
from strategies.store.base import StoreUnavailable, TierableStore
from strategies.store.config import MysqlStoreConfig
from strategies.store.group_commit import GroupCommit, MarksBatch
from strategies.store.mysql.db import Mysql
from strategies.store.mysql.schema import message_migrations
from strategies.store.sql import rows
from strategies.store.sql.dialect import MYSQL, chunks, like_escape
from strategies.store.sql.messages import INSERT_COLS, SqlMessageStore, number

log = logging.getLogger(__name__)


def _in(n: int) -> str:
    """Placeholders for the group commit's statements, which run on the driver's cursor (``%s`` style)."""
    return ",".join(["%s"] * n)


class MysqlMessageStore(SqlMessageStore):
    """Messages, marks and dead letters in MySQL with group commit (module docstring)."""

    _db: Mysql
    _MARKS = "delivered_seq, read_seq"

    def __init__(self, config: MysqlStoreConfig, ctx: StrategyContext) -> None:
        self._db = Mysql(config, "messages", ctx)
        self._d = MYSQL
        self._p = config.table_prefix
        self._metrics = ctx.metrics
        self._gc = GroupCommit("mysql", self._commit, config.max_batch, ctx.metrics)
        self._fulltext = False

    def _g(self, table: str) -> str:
        return f"`{self._p}{table}`"

    async def start(self) -> None:
        await self._db.open(lambda: message_migrations(self._p), None)
        self._fulltext = await self._ensure_fulltext()
        self._gc.start()

    async def _ensure_fulltext(self) -> bool:
        """Add the FULLTEXT ngram index where the server can build one; False: search uses LIKE only."""
        row = await self._db.one("SELECT VERSION()")
        if row is None or "mariadb" in str(row[0]).lower():
            return False
        exists = await self._db.one(
            "SELECT 1 FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? "
            "AND INDEX_NAME = 'messages_search' LIMIT 1",
            (f"{self._p}messages",),
        )
        if exists:
            return True
        try:
            await self._db.execute(
                f"ALTER TABLE {self._g('messages')} ADD FULLTEXT INDEX messages_search (search_text) WITH PARSER ngram"
            )
        except StoreUnavailable as exc:
            log.warning("mysql: no FULLTEXT ngram index, message search uses LIKE: %s", exc)
            return False
        return True

    async def close(self) -> None:
        await self._gc.close()
        await self._db.close()

    async def _commit(self, drafts: list[MessageDraft], marks: MarksBatch) -> list[AppendResult]:
        return await self._db.cursor_tx(lambda cur: self._write_batch(cur, drafts, marks), attempts=5)

    async def _write_batch(
        self, cur: aiomysql.Cursor, drafts: list[MessageDraft], marks: MarksBatch
    ) -> list[AppendResult]:
        if marks:
            await cur.executemany(
                f"INSERT INTO {self._g('marks')} (conv, user_id, delivered_seq, read_seq) VALUES (%s, %s, %s, %s) "
                "ON DUPLICATE KEY UPDATE delivered_seq = GREATEST(delivered_seq, VALUES(delivered_seq)), "
                "read_seq = GREATEST(read_seq, VALUES(read_seq))",
                [(conv, user, v[0], v[1]) for (conv, user), v in sorted(marks.items())],
            )
        if not drafts:
            return []
        convs = sorted({d.conv for d in drafts})
        # Lock the heads in a fixed order (sorted) so concurrent batches on several nodes cannot deadlock.
        await cur.executemany(
            # every value a placeholder: aiomysql turns executemany into one multi-row INSERT only then
            f"INSERT INTO {self._g('conversations')} (conv, last_seq) VALUES (%s, %s) "
            "ON DUPLICATE KEY UPDATE conv = conv",
            [(c, 0) for c in convs],
        )
        await cur.execute(
            f"SELECT conv, last_seq FROM {self._g('conversations')} WHERE conv IN ({_in(len(convs))}) "
            "ORDER BY conv FOR UPDATE",
            convs,
        )
        last = {r[0]: int(r[1]) for r in await cur.fetchall()}
        keys = sorted({d.dedup_key for d in drafts if d.dedup_key is not None})
        originals: dict[str, Message] = {}
        if keys:
            await cur.execute(
                f"SELECT {rows.MESSAGE_COLS}, dedup_key FROM {self._g('messages')} WHERE dedup_key IN ({_in(len(keys))})",
                keys,
            )
            originals = {r[10]: rows.message(r) for r in await cur.fetchall()}
        results, inserts, heads = number(drafts, last, originals)
        if inserts:
            await cur.executemany(
                f"INSERT INTO {self._g('messages')} ({INSERT_COLS}) VALUES ({_in(10)})",
                inserts,
            )
            # One multi-row statement (an executemany UPDATE would be a round trip per conversation).
            await cur.executemany(
                f"INSERT INTO {self._g('conversations')} (conv, last_seq, last_id, last_ts) VALUES (%s, %s, %s, %s) "
                "ON DUPLICATE KEY UPDATE last_seq = VALUES(last_seq), last_id = VALUES(last_id), "
                "last_ts = VALUES(last_ts)",
                [(c, m.seq, m.id, m.ts_ms) for c, m in sorted(heads.items())],
            )
        return results

    # ---------------------------------------------------------------- search
    async def _search(
        self, windows: Mapping[str, int], query: str, before_id: int, limit: int
    ) -> list[Message]:
        # LIKE is the exact check on every path; with the ngram index, MATCH narrows the rows first. The
        # ngram index holds 2-grams (ngram_token_size default), so a 1-character query uses LIKE alone.
        text = "search_text LIKE ?"
        tail: list[Any] = [f"%{like_escape(query)}%"]
        if self._fulltext and len(query) >= 2:
            text += " AND MATCH(search_text) AGAINST (? IN BOOLEAN MODE)"
            tail.append('"' + query.replace('"', " ") + '"')
        tail += [before_id, limit]
        found: list[Message] = []
        for chunk in chunks(sorted(windows.items()), 500):  # bounded statements; pages merge by id below
            where = " OR ".join(["(conv = ? AND seq >= ?)"] * len(chunk))
            with self._metrics.store_op("mysql", "search"):
                page = await self._db.all(
                    f"SELECT {rows.MESSAGE_COLS} FROM {self._g('messages')} WHERE ({where}) AND {text} "
                    "AND recalled = 0 AND id < ? ORDER BY id DESC LIMIT ?",
                    [*(v for item in chunk for v in item), *tail],
                )
            found += [rows.message(r) for r in page]
        found.sort(key=lambda m: m.id, reverse=True)
        return found[:limit]


if TYPE_CHECKING:  # mypy checks that the class meets the role it is registered for
    _meets: type[TierableStore] = MysqlMessageStore
