"""SQLite stores: the embedded default, no service needed.

One writer connection and one reader connection per database file, in WAL mode so reads never wait for the
writer. Writes to the message store are group-committed: appends and receipt marks that arrive while a
transaction is running share the next one, so throughput grows with load while every caller still returns only
after its own commit. ``BEGIN IMMEDIATE`` takes SQLite's write lock, so several processes may share one file
(a local cluster) without allocating a sequence number twice.

A group commit is one function run in the writer thread: look up which dedup keys exist, read the conversations'
counters, number the new messages, insert them and advance the counters, all inside ``BEGIN IMMEDIATE``; a
duplicate never consumes a number.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import orjson

from core.models import (
    AppendResult,
    ConversationHead,
    DeadLetter,
    FileMeta,
    Friend,
    FriendRequest,
    Group,
    Marks,
    Member,
    Message,
    MessageDraft,
    MessageKind,
    RefreshToken,
    Role,
    User,
)
from strategies.context import StrategyContext
from strategies.store.base import DuplicateError, StoreUnavailable
from strategies.store.config import SqliteStoreConfig
from strategies.store.group_commit import GroupCommit, MarksBatch

log = logging.getLogger(__name__)
T = TypeVar("T")

USER_SCHEMA = [
    # version 1
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY, username TEXT NOT NULL UNIQUE, display_name TEXT NOT NULL,
        password_hash TEXT NOT NULL, bio TEXT NOT NULL DEFAULT '', avatar_file INTEGER, created_ms INTEGER NOT NULL
    );
    CREATE TABLE sessions (
        family TEXT PRIMARY KEY, user_id INTEGER NOT NULL, device TEXT, created_ms INTEGER NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX sessions_user ON sessions(user_id);
    CREATE TABLE refresh_tokens (
        token_hash TEXT PRIMARY KEY, user_id INTEGER NOT NULL, family TEXT NOT NULL, expires_ms INTEGER NOT NULL,
        used INTEGER NOT NULL DEFAULT 0, device TEXT
    );
    CREATE INDEX refresh_family ON refresh_tokens(family);
    CREATE TABLE friend_requests (
        id INTEGER PRIMARY KEY, from_user INTEGER NOT NULL, to_user INTEGER NOT NULL, message TEXT NOT NULL,
        status TEXT NOT NULL, created_ms INTEGER NOT NULL
    );
    CREATE INDEX friend_requests_to ON friend_requests(to_user, status);
    CREATE INDEX friend_requests_from ON friend_requests(from_user, status);
    CREATE TABLE friends (
        user_id INTEGER NOT NULL, friend_id INTEGER NOT NULL, remark TEXT NOT NULL DEFAULT '',
        since_ms INTEGER NOT NULL, PRIMARY KEY (user_id, friend_id)
    ) WITHOUT ROWID;
    CREATE TABLE blocks (
        user_id INTEGER NOT NULL, target INTEGER NOT NULL, at_ms INTEGER NOT NULL, PRIMARY KEY (user_id, target)
    ) WITHOUT ROWID;
    CREATE TABLE chat_groups (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL, owner INTEGER NOT NULL, created_ms INTEGER NOT NULL,
        dissolved INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE members (
        group_id INTEGER NOT NULL, user_id INTEGER NOT NULL, role TEXT NOT NULL, joined_ms INTEGER NOT NULL,
        joined_seq INTEGER NOT NULL, PRIMARY KEY (group_id, user_id)
    ) WITHOUT ROWID;
    CREATE INDEX members_user ON members(user_id);
    CREATE TABLE files (
        id INTEGER PRIMARY KEY, owner INTEGER NOT NULL, name TEXT NOT NULL, size INTEGER NOT NULL,
        mime TEXT NOT NULL, storage_key TEXT NOT NULL, created_ms INTEGER NOT NULL, width INTEGER, height INTEGER,
        thumb_key TEXT
    );
    CREATE TABLE file_refs (file_id INTEGER NOT NULL, conv TEXT NOT NULL, PRIMARY KEY (file_id, conv)) WITHOUT ROWID;
    """,
]

MESSAGE_SCHEMA = [
    # version 1
    """
    CREATE TABLE conversations (
        conv TEXT PRIMARY KEY, last_seq INTEGER NOT NULL, last_id INTEGER, last_ts INTEGER
    ) WITHOUT ROWID;
    CREATE TABLE messages (
        conv TEXT NOT NULL, seq INTEGER NOT NULL, id INTEGER NOT NULL, sender INTEGER NOT NULL,
        device TEXT NOT NULL, cmid TEXT NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL, ts INTEGER NOT NULL,
        recalled INTEGER NOT NULL DEFAULT 0, dedup_key TEXT,
        PRIMARY KEY (conv, seq)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX messages_id ON messages(id);
    CREATE UNIQUE INDEX messages_dedup ON messages(dedup_key) WHERE dedup_key IS NOT NULL;
    CREATE TABLE marks (
        conv TEXT NOT NULL, user_id INTEGER NOT NULL, delivered INTEGER NOT NULL DEFAULT 0,
        read INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (conv, user_id)
    ) WITHOUT ROWID;
    CREATE INDEX marks_user ON marks(user_id);
    CREATE TABLE dead_letters (
        id INTEGER PRIMARY KEY, msg_id INTEGER NOT NULL, conv TEXT NOT NULL, seq INTEGER NOT NULL,
        user_id INTEGER NOT NULL, device TEXT NOT NULL, attempts INTEGER NOT NULL, reason TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    );
    """,
    # version 2: tiering. The tier job takes the oldest messages first (index on ts).
    """
    CREATE INDEX messages_ts ON messages(ts);
    """,
    # version 3: no query needs marks(user_id) (user_marks reads the full primary key (conv, user_id); every
    # query's plan is checked in tests/unit/test_sqlite_plans.py), and each index costs every write.
    """
    DROP INDEX IF EXISTS marks_user;
    """,
    # ---- version 4: message search (docs/protocol.md "Search"). FTS5 with the trigram tokenizer: any substring
    # of 3+ characters, Chinese included, without a word segmenter. Indexing costs ~15-20 us of writer CPU per
    # message (docs/database.md "Search index cost"), so a commit only queues the id (search_pending) and
    # ``_index_pending`` indexes the queue in batches off the ack path. Rows are keyed by message id; a search
    # joins back to ``messages`` and re-checks window and ``recalled`` there. A recall or a tier move removes
    # the row at once.
    """
    CREATE VIRTUAL TABLE messages_fts USING fts5(text, tokenize = 'trigram');
    CREATE TABLE search_pending (id INTEGER PRIMARY KEY);
    INSERT INTO search_pending (id) SELECT id FROM messages WHERE recalled = 0;
    CREATE TRIGGER messages_search_pending AFTER INSERT ON messages WHEN new.recalled = 0
    BEGIN
        INSERT OR IGNORE INTO search_pending (id) VALUES (new.id);
    END;
    CREATE TRIGGER messages_fts_recall AFTER UPDATE OF recalled ON messages
        WHEN new.recalled = 1 AND old.recalled = 0
    BEGIN
        DELETE FROM messages_fts WHERE rowid = old.id;
    END;
    CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
    BEGIN
        DELETE FROM messages_fts WHERE rowid = old.id;
    END;
    """,
    # ---- end of version 4
]


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


def _unavailable(exc: Exception) -> StoreUnavailable:
    return StoreUnavailable(f"sqlite: {exc}")


def _name_os_thread(name: str) -> None:
    """Give the OS thread the Python thread's name (Linux ``prctl(PR_SET_NAME)``, 15 bytes), so ``top -H`` and the
    benchmark's per-thread CPU split (``/proc/<pid>/task/<tid>/comm``) can tell the writer from the event loop."""
    with suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)


class _SqliteThread:
    """One sqlite3 connection owned by one thread; ``run(fn)`` executes ``fn(conn)`` there.

    This is what aiosqlite does, with one difference that matters here: aiosqlite hops between the event loop and
    its thread once per statement, and each hop waits for a loop iteration. A group commit is five or six
    statements, so on a busy loop it cost 15 ms per commit (measured, 100 senders); running the whole
    transaction as one function costs one hop.
    """

    def __init__(self, path: Path, config: SqliteStoreConfig, name: str) -> None:
        self._path = path
        self._config = config
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=name, initializer=_name_os_thread, initargs=(name,)
        )
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(self._config.busy_timeout_ms)}")
        self._enable_wal(conn)
        conn.execute(f"PRAGMA synchronous = {self._config.synchronous}")
        conn.execute(f"PRAGMA cache_size = -{int(self._config.cache_size_kib)}")
        conn.execute(f"PRAGMA wal_autocheckpoint = {int(self._config.wal_autocheckpoint_pages)}")
        conn.execute("PRAGMA foreign_keys = ON")
        self._conn = conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        """Switch the file to WAL, retrying while another process does the same.

        Changing the journal mode needs an exclusive lock and SQLite does not call the busy handler for it, so
        nodes of a local cluster starting together on one file got "database is locked" at once (seen in CI).
        WAL is persistent: once one process has switched the file, the others find it already set.
        """
        deadline = time.monotonic() + self._config.busy_timeout_ms / 1000
        delay = 0.005
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            raise StoreUnavailable("sqlite store is closed")
        return fn(self._conn)

    async def open(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._connect)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._call, fn)

    async def close(self) -> None:
        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        with suppress(Exception):
            await asyncio.get_running_loop().run_in_executor(self._executor, _close)
        self._executor.shutdown(wait=False)


def _transaction(fn: Callable[[sqlite3.Connection], T], conn: sqlite3.Connection) -> T:
    """Run ``fn`` inside BEGIN IMMEDIATE (SQLite's write lock, also across processes) ... COMMIT."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise _unavailable(exc) from exc
    try:
        result = fn(conn)
        conn.execute("COMMIT")
    except sqlite3.IntegrityError as exc:
        conn.execute("ROLLBACK")
        raise DuplicateError(str(exc)) from exc
    except sqlite3.Error as exc:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise _unavailable(exc) from exc
    except BaseException:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    return result


class _Db:
    """A database file with a writer thread (transactions) and a reader thread (WAL snapshots)."""

    def __init__(self, path: Path, config: SqliteStoreConfig) -> None:
        self.path = path
        self.config = config
        self.writer = _SqliteThread(path, config, f"sqlite-w-{path.stem}")
        self.reader = _SqliteThread(path, config, f"sqlite-r-{path.stem}")

    async def open(self, migrations: Sequence[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await self.writer.open()
        await self.reader.open()

        def migrate(conn: sqlite3.Connection) -> None:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            for i, script in enumerate(migrations[version:], start=version + 1):
                for statement in _split_sql(script):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {i}")

        await self.write(migrate)

    async def close(self) -> None:
        await self.writer.close()
        await self.reader.close()

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self.writer.run(partial(_transaction, fn))

    async def execute_write(self, sql: str, params: Sequence[Any] = ()) -> int:
        return await self.write(lambda conn: conn.execute(sql, params).rowcount)

    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        def query(conn: sqlite3.Connection) -> list[Any]:
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise _unavailable(exc) from exc

        return await self.reader.run(query)

    async def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = await self.all(sql, params)
        return rows[0] if rows else None


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements; trigger bodies (BEGIN ... END;) stay whole."""
    statements: list[str] = []
    buf: list[str] = []
    for line in script.strip().splitlines():
        buf.append(line)
        joined = "\n".join(buf).strip()
        if joined.endswith(";") and sqlite3.complete_statement(joined):
            statements.append(joined)
            buf = []
    if "".join(buf).strip():
        statements.append("\n".join(buf))
    return statements


def _resolve(path: str, ctx: StrategyContext) -> Path:
    p = Path(path)
    return p if p.is_absolute() else ctx.data_dir / p


def _placeholders(n: int) -> str:
    return ",".join("?" * n)


# =========================================================================== users


def _user(row: Any) -> User:
    return User(row[0], row[1], row[2], row[3], row[6], row[4], row[5])


_USER_COLS = "id, username, display_name, password_hash, bio, avatar_file, created_ms"
_GROUP_COLS = "g.id, g.name, g.owner, g.created_ms, g.dissolved, (SELECT COUNT(*) FROM members m WHERE m.group_id = g.id)"


def _group(row: Any) -> Group:
    return Group(row[0], row[1], row[2], row[3], bool(row[4]), row[5])


def _member(row: Any) -> Member:
    return Member(row[0], Role(row[1]), row[2], row[3])


def _like_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class SqliteUserStore:
    def __init__(self, config: SqliteStoreConfig, ctx: StrategyContext) -> None:
        self._db = _Db(_resolve(config.path, ctx), config)

    async def start(self) -> None:
        await self._db.open(USER_SCHEMA)

    async def close(self) -> None:
        await self._db.close()

    # ---------------------------------------------------------------- users
    async def create_user(self, user: User) -> None:
        await self._db.execute_write(
            f"INSERT INTO users ({_USER_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                user.id,
                user.username,
                user.display_name,
                user.password_hash,
                user.bio,
                user.avatar_file,
                user.created_ms,
            ),
        )

    async def get_user(self, user_id: int) -> User | None:
        row = await self._db.one(f"SELECT {_USER_COLS} FROM users WHERE id = ?", (user_id,))
        return _user(row) if row else None

    async def get_users(self, user_ids: Iterable[int]) -> dict[int, User]:
        ids = list(set(user_ids))
        out: dict[int, User] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            rows = await self._db.all(
                f"SELECT {_USER_COLS} FROM users WHERE id IN ({_placeholders(len(chunk))})", chunk
            )
            out.update((r[0], _user(r)) for r in rows)
        return out

    async def get_user_by_name(self, username: str) -> User | None:
        row = await self._db.one(f"SELECT {_USER_COLS} FROM users WHERE username = ?", (username,))
        return _user(row) if row else None

    async def update_user(
        self,
        user_id: int,
        *,
        display_name: str | None = None,
        bio: str | None = None,
        avatar_file: int | None = None,
    ) -> User | None:
        sets: list[str] = []
        params: list[Any] = []
        for col, val in (("display_name", display_name), ("bio", bio), ("avatar_file", avatar_file)):
            if val is not None:
                sets.append(f"{col} = ?")
                params.append(val)
        if sets:
            await self._db.execute_write(
                f"UPDATE users SET {', '.join(sets)} WHERE id = ?", (*params, user_id)
            )
        return await self.get_user(user_id)

    async def search_users(self, query: str, limit: int) -> list[User]:
        q = _like_escape(query.lower())
        rows = await self._db.all(
            f"SELECT {_USER_COLS} FROM users WHERE username LIKE ? ESCAPE '\\' "
            "OR display_name LIKE ? ESCAPE '\\' ORDER BY username LIMIT ?",
            (q + "%", "%" + _like_escape(query) + "%", limit),
        )
        return [_user(r) for r in rows]

    # ---------------------------------------------------------------- sessions
    async def create_session(self, family: str, user_id: int, device: str | None, created_ms: int) -> None:
        await self._db.execute_write(
            "INSERT INTO sessions (family, user_id, device, created_ms) VALUES (?, ?, ?, ?)",
            (family, user_id, device, created_ms),
        )

    async def session_active(self, family: str) -> bool:
        row = await self._db.one("SELECT revoked FROM sessions WHERE family = ?", (family,))
        return bool(row) and not row[0]

    async def session_user(self, family: str) -> int | None:
        row = await self._db.one("SELECT user_id, revoked FROM sessions WHERE family = ?", (family,))
        return int(row[0]) if row and not row[1] else None

    async def revoke_session(self, family: str) -> int | None:
        def run(conn: sqlite3.Connection) -> int | None:
            cur = conn.execute("SELECT user_id FROM sessions WHERE family = ?", (family,))
            row = cur.fetchone()
            if row is None:
                return None
            conn.execute("UPDATE sessions SET revoked = 1 WHERE family = ?", (family,))
            conn.execute("UPDATE refresh_tokens SET used = 1 WHERE family = ?", (family,))
            return int(row[0])

        return await self._db.write(run)

    async def add_refresh_token(self, token: RefreshToken) -> None:
        await self._db.execute_write(
            "INSERT INTO refresh_tokens (token_hash, user_id, family, expires_ms, used, device) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (token.token_hash, token.user_id, token.family, token.expires_ms, int(token.used), token.device),
        )

    async def claim_refresh_token(
        self, token_hash: str, now_ms: int
    ) -> tuple[RefreshToken | None, bool, User | None]:
        def run(conn: sqlite3.Connection) -> tuple[RefreshToken | None, bool, User | None]:
            cur = conn.execute(
                "SELECT t.token_hash, t.user_id, t.family, t.expires_ms, t.used, t.device, s.revoked "
                "FROM refresh_tokens t LEFT JOIN sessions s ON s.family = t.family WHERE t.token_hash = ?",
                (token_hash,),
            )
            row = cur.fetchone()
            if row is None:
                return None, False, None
            # `used` holds the wall ms of the first exchange (1 for tokens marked by a logout)
            tok = RefreshToken(
                row[0], row[1], row[2], row[3], bool(row[4]), bool(row[6]), row[5], int(row[4])
            )
            urow = conn.execute(f"SELECT {_USER_COLS} FROM users WHERE id = ?", (tok.user_id,)).fetchone()
            user = _user(urow) if urow else None
            if tok.used or tok.revoked or tok.expires_ms <= now_ms or user is None:
                return tok, False, user  # a refresh that fails does not spend the token
            conn.execute(
                "UPDATE refresh_tokens SET used = ? WHERE token_hash = ?", (max(1, now_ms), token_hash)
            )
            return tok, True, user

        return await self._db.write(run)

    # ---------------------------------------------------------------- friends
    async def add_friend_request(self, request: FriendRequest) -> None:
        await self._db.execute_write(
            "INSERT INTO friend_requests (id, from_user, to_user, message, status, created_ms) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                request.id,
                request.from_user,
                request.to_user,
                request.message,
                request.status,
                request.created_ms,
            ),
        )

    async def get_friend_request(self, request_id: int) -> FriendRequest | None:
        row = await self._db.one(
            "SELECT id, from_user, to_user, message, status, created_ms FROM friend_requests WHERE id = ?",
            (request_id,),
        )
        return FriendRequest(*row) if row else None

    async def pending_request(self, from_user: int, to_user: int) -> FriendRequest | None:
        row = await self._db.one(
            "SELECT id, from_user, to_user, message, status, created_ms FROM friend_requests "
            "WHERE from_user = ? AND to_user = ? AND status = 'pending' ORDER BY id DESC LIMIT 1",
            (from_user, to_user),
        )
        return FriendRequest(*row) if row else None

    async def list_friend_requests(self, user_id: int) -> list[FriendRequest]:
        rows = await self._db.all(
            "SELECT id, from_user, to_user, message, status, created_ms FROM friend_requests "
            "WHERE (to_user = ? OR from_user = ?) AND status = 'pending' ORDER BY id DESC LIMIT 500",
            (user_id, user_id),
        )
        return [FriendRequest(*r) for r in rows]

    async def set_friend_request_status(self, request_id: int, status: str) -> None:
        await self._db.execute_write(
            "UPDATE friend_requests SET status = ? WHERE id = ?", (status, request_id)
        )

    async def add_friendship(self, a: int, b: int, since_ms: int) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO friends (user_id, friend_id, since_ms) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                [(a, b, since_ms), (b, a, since_ms)],
            )

        await self._db.write(run)

    async def remove_friendship(self, a: int, b: int) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM friends WHERE (user_id = ? AND friend_id = ?) OR (user_id = ? AND friend_id = ?)",
                (a, b, b, a),
            )
            return cur.rowcount > 0

        return await self._db.write(run)

    async def list_friends(self, user_id: int) -> list[Friend]:
        rows = await self._db.all(
            "SELECT friend_id, remark, since_ms FROM friends WHERE user_id = ? ORDER BY since_ms", (user_id,)
        )
        return [Friend(*r) for r in rows]

    async def are_friends(self, a: int, b: int) -> bool:
        row = await self._db.one("SELECT 1 FROM friends WHERE user_id = ? AND friend_id = ?", (a, b))
        return row is not None

    async def set_remark(self, user_id: int, friend_id: int, remark: str) -> bool:
        n = await self._db.execute_write(
            "UPDATE friends SET remark = ? WHERE user_id = ? AND friend_id = ?", (remark, user_id, friend_id)
        )
        return n > 0

    async def block(self, user_id: int, target: int, at_ms: int) -> None:
        await self._db.execute_write(
            "INSERT INTO blocks (user_id, target, at_ms) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (user_id, target, at_ms),
        )

    async def unblock(self, user_id: int, target: int) -> bool:
        n = await self._db.execute_write(
            "DELETE FROM blocks WHERE user_id = ? AND target = ?", (user_id, target)
        )
        return n > 0

    async def list_blocked(self, user_id: int) -> list[int]:
        rows = await self._db.all("SELECT target FROM blocks WHERE user_id = ? ORDER BY at_ms", (user_id,))
        return [r[0] for r in rows]

    async def is_blocked(self, blocker: int, target: int) -> bool:
        row = await self._db.one("SELECT 1 FROM blocks WHERE user_id = ? AND target = ?", (blocker, target))
        return row is not None

    # ---------------------------------------------------------------- groups
    async def create_group(self, group: Group, members: Sequence[Member]) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO chat_groups (id, name, owner, created_ms, dissolved) VALUES (?, ?, ?, ?, 0)",
                (group.id, group.name, group.owner, group.created_ms),
            )
            conn.executemany(
                "INSERT INTO members (group_id, user_id, role, joined_ms, joined_seq) VALUES (?, ?, ?, ?, ?)",
                [(group.id, m.user_id, m.role.value, m.joined_ms, m.joined_seq) for m in members],
            )

        await self._db.write(run)

    async def get_group(self, group_id: int) -> Group | None:
        row = await self._db.one(f"SELECT {_GROUP_COLS} FROM chat_groups g WHERE g.id = ?", (group_id,))
        return _group(row) if row else None

    async def rename_group(self, group_id: int, name: str) -> None:
        await self._db.execute_write("UPDATE chat_groups SET name = ? WHERE id = ?", (name, group_id))

    async def dissolve_group(self, group_id: int) -> None:
        await self._db.execute_write("UPDATE chat_groups SET dissolved = 1 WHERE id = ?", (group_id,))

    async def add_members(self, group_id: int, members: Sequence[Member]) -> list[int]:
        def run(conn: sqlite3.Connection) -> list[int]:
            added: list[int] = []
            for m in members:
                cur = conn.execute(
                    "INSERT INTO members (group_id, user_id, role, joined_ms, joined_seq) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    (group_id, m.user_id, m.role.value, m.joined_ms, m.joined_seq),
                )
                if cur.rowcount > 0:
                    added.append(m.user_id)
            return added

        return await self._db.write(run)

    async def remove_member(self, group_id: int, user_id: int) -> bool:
        n = await self._db.execute_write(
            "DELETE FROM members WHERE group_id = ? AND user_id = ?", (group_id, user_id)
        )
        return n > 0

    async def set_role(self, group_id: int, user_id: int, role: Role) -> bool:
        n = await self._db.execute_write(
            "UPDATE members SET role = ? WHERE group_id = ? AND user_id = ?", (role.value, group_id, user_id)
        )
        return n > 0

    async def get_members(self, group_id: int) -> list[Member]:
        rows = await self._db.all(
            "SELECT user_id, role, joined_ms, joined_seq FROM members WHERE group_id = ? ORDER BY joined_ms, user_id",
            (group_id,),
        )
        return [_member(r) for r in rows]

    async def get_member(self, group_id: int, user_id: int) -> Member | None:
        row = await self._db.one(
            "SELECT user_id, role, joined_ms, joined_seq FROM members WHERE group_id = ? AND user_id = ?",
            (group_id, user_id),
        )
        return _member(row) if row else None

    async def list_user_groups(self, user_id: int) -> list[Group]:
        rows = await self._db.all(
            f"SELECT {_GROUP_COLS} FROM chat_groups g JOIN members mm ON mm.group_id = g.id "
            "WHERE mm.user_id = ? ORDER BY g.id",
            (user_id,),
        )
        return [_group(r) for r in rows]

    # ---------------------------------------------------------------- files
    async def add_file(self, meta: FileMeta) -> None:
        await self._db.execute_write(
            "INSERT INTO files (id, owner, name, size, mime, storage_key, created_ms, width, height, thumb_key) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                meta.id,
                meta.owner,
                meta.name,
                meta.size,
                meta.mime,
                meta.storage_key,
                meta.created_ms,
                meta.width,
                meta.height,
                meta.thumb_key,
            ),
        )

    async def get_file(self, file_id: int) -> FileMeta | None:
        row = await self._db.one(
            "SELECT id, owner, name, size, mime, storage_key, created_ms, width, height, thumb_key "
            "FROM files WHERE id = ?",
            (file_id,),
        )
        return FileMeta(*row) if row else None

    async def add_file_ref(self, file_id: int, conv: str) -> None:
        await self._db.execute_write(
            "INSERT INTO file_refs (file_id, conv) VALUES (?, ?) ON CONFLICT DO NOTHING", (file_id, conv)
        )

    async def file_convs(self, file_id: int) -> list[str]:
        rows = await self._db.all("SELECT conv FROM file_refs WHERE file_id = ?", (file_id,))
        return [r[0] for r in rows]


# =========================================================================== messages

_MSG_COLS = "id, conv, seq, sender, device, cmid, kind, body, ts, recalled"
# The batch's keys and conversations go in as one JSON array: one statement text (prepared once) for any batch.
_EXISTING_KEYS = (
    f"SELECT {_MSG_COLS}, dedup_key FROM messages WHERE dedup_key IN (SELECT value FROM json_each(?))"
)
_COUNTERS = "SELECT json_group_object(conv, last_seq) FROM conversations WHERE conv IN (SELECT value FROM json_each(?))"
# Batched writes are multi-row statements, not executemany: sqlite3 releases and re-takes the GIL around every
# step, and on a busy server each re-take waits for the event loop's thread, so executemany of a 1,000-row group
# commit queued behind the loop a thousand times (measured: commits of hundreds of ms at 1,500 msgs/s). One
# statement per table is one step.
_INSERT_MESSAGE = (
    "INSERT INTO messages (conv, seq, id, sender, device, cmid, kind, body, ts, dedup_key) VALUES ",
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


def _insert_rows(conn: sqlite3.Connection, sql: tuple[str, str, str], rows: Sequence[Sequence[Any]]) -> None:
    """``INSERT ... VALUES (..), (..), ...`` in as few statements as the parameter limit allows.

    One statement per batch size, not fixed-size chunks: every statement is one more GIL hand-off between the writer
    thread and the event loop (see above), and sqlite3's statement cache (128) already holds the usual sizes
    (docs/performance.md: fixed sizes measured no cheaper)."""
    head, row, tail = sql
    if not rows:
        return
    per = max(1, _MAX_PARAMS // len(rows[0]))
    for i in range(0, len(rows), per):
        chunk = rows[i : i + per]
        conn.execute(head + ",".join([row] * len(chunk)) + tail, [v for r in chunk for v in r])


def _raise(out: dict[Any, Marks], key: Any, delivered: int, read: int) -> None:
    cur = out.get(key)
    if cur is None:
        out[key] = Marks(delivered, read)
    elif delivered > cur.delivered or read > cur.read:
        out[key] = Marks(max(cur.delivered, delivered), max(cur.read, read))


def _message(row: Any) -> Message:
    return Message(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        MessageKind(row[6]),
        orjson.loads(row[7]),
        row[8],
        bool(row[9]),
    )


class SqliteMessageStore:
    """Messages, receipts and dead letters in SQLite, with group commit (see the module docstring)."""

    def __init__(self, config: SqliteStoreConfig, ctx: StrategyContext) -> None:
        self._db = _Db(_resolve(config.path, ctx), config)
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
        if self._indexer is not None:
            self._indexer.cancel()
            with suppress(asyncio.CancelledError):
                await self._indexer
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

    async def set_marks(self, conv: str, user_id: int, *, delivered: int = 0, read: int = 0) -> None:
        await self._gc.set_marks(conv, user_id, delivered, read)

    def queue_marks(self, conv: str, user_id: int, *, delivered: int = 0, read: int = 0) -> None:
        self._gc.queue_marks(conv, user_id, delivered, read)

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
                rows = conn.execute(_EXISTING_KEYS, (orjson.dumps(keys).decode(),)).fetchall()
                existing = {row[10]: _message(row) for row in rows}
            convs = list({d.conv for d in drafts})
            # one result row (one step), however many conversations the batch touches
            row = conn.execute(_COUNTERS, (orjson.dumps(convs).decode(),)).fetchone()
            last: dict[str, int] = orjson.loads(row[0]) if row and row[0] else {}
            inserts: list[tuple[Any, ...]] = []
            heads: dict[str, int] = {}
            for d in drafts:
                key = d.dedup_key
                if key is not None and key in existing:  # stored before, or earlier in this batch
                    results.append(AppendResult(existing[key], False))
                    continue
                seq = last.get(d.conv, 0) + 1
                last[d.conv] = seq
                msg = Message(d.id, d.conv, seq, d.sender, d.device, d.cmid, d.kind, d.body, d.ts_ms)
                if key is not None:
                    existing[key] = msg
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
                heads[d.conv] = seq
                results.append(AppendResult(msg, True))
            _insert_rows(conn, _INSERT_MESSAGE, inserts)
            _insert_rows(conn, _UPSERT_HEAD, list(heads.items()))
        if marks:
            _insert_rows(conn, _UPSERT_MARKS, [(conv, user, v[0], v[1]) for (conv, user), v in marks.items()])
        return results

    # ---------------------------------------------------------------- reads
    async def get_message(self, msg_id: int) -> Message | None:
        row = await self._db.one(f"SELECT {_MSG_COLS} FROM messages WHERE id = ?", (msg_id,))
        return _message(row) if row else None

    async def messages_after(self, conv: str, after_seq: int, limit: int) -> list[Message]:
        with self._metrics.store_op("sqlite", "messages_after"):
            rows = await self._db.all(
                f"SELECT {_MSG_COLS} FROM messages WHERE conv = ? AND seq > ? ORDER BY seq LIMIT ?",
                (conv, after_seq, limit),
            )
        return [_message(r) for r in rows]

    async def messages_before(self, conv: str, before_seq: int, limit: int) -> list[Message]:
        with self._metrics.store_op("sqlite", "messages_before"):
            rows = await self._db.all(
                f"SELECT {_MSG_COLS} FROM messages WHERE conv = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
                (conv, before_seq, limit),
            )
        return [_message(r) for r in reversed(rows)]

    async def heads(self, convs: Iterable[str]) -> dict[str, ConversationHead]:
        keys = list(set(convs))
        out: dict[str, ConversationHead] = {}
        for i in range(0, len(keys), 400):
            chunk = keys[i : i + 400]
            rows = await self._db.all(
                f"SELECT c.conv, c.last_seq, m.id, m.conv, m.seq, m.sender, m.device, m.cmid, m.kind, m.body, m.ts, "
                f"m.recalled FROM conversations c LEFT JOIN messages m ON m.conv = c.conv AND m.seq = c.last_seq "
                f"WHERE c.conv IN ({_placeholders(len(chunk))})",
                chunk,
            )
            for r in rows:
                last = _message(r[2:]) if r[2] is not None else None
                out[r[0]] = ConversationHead(r[0], r[1], last)
        return out

    async def mark_recalled(self, msg_id: int) -> bool:
        n = await self._db.execute_write(
            "UPDATE messages SET recalled = 1, body = '{}' WHERE id = ? AND recalled = 0", (msg_id,)
        )
        return n > 0

    async def get_marks(self, conv: str) -> dict[int, Marks]:
        rows = await self._db.all("SELECT user_id, delivered, read FROM marks WHERE conv = ?", (conv,))
        out = {r[0]: Marks(r[1], r[2]) for r in rows}
        for pending in self._gc.pending_marks():  # queued marks not written yet (marks_flush_ms)
            for (c, user), (delivered, read) in list(pending.items()):
                if c == conv:
                    _raise(out, user, delivered, read)
        return out

    async def user_marks(self, user_id: int, convs: Iterable[str]) -> dict[str, Marks]:
        keys = list(set(convs))
        out: dict[str, Marks] = {}
        for i in range(0, len(keys), 400):
            chunk = keys[i : i + 400]
            rows = await self._db.all(
                f"SELECT conv, delivered, read FROM marks WHERE user_id = ? AND conv IN ({_placeholders(len(chunk))})",
                (user_id, *chunk),
            )
            out.update((r[0], Marks(r[1], r[2])) for r in rows)
        for pending in self._gc.pending_marks():
            for conv in keys:
                v = pending.get((conv, user_id))
                if v is not None:
                    _raise(out, conv, v[0], v[1])
        return out

    # ---------------------------------------------------------------- dead letters
    async def add_dead_letter(self, letter: DeadLetter) -> None:
        await self._db.execute_write(
            "INSERT INTO dead_letters (id, msg_id, conv, seq, user_id, device, attempts, reason, created_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                letter.id,
                letter.msg_id,
                letter.conv,
                letter.seq,
                letter.user_id,
                letter.device,
                letter.attempts,
                letter.reason,
                letter.created_ms,
            ),
        )

    async def list_dead_letters(self, limit: int, offset: int) -> list[DeadLetter]:
        rows = await self._db.all(
            "SELECT id, msg_id, conv, seq, user_id, device, attempts, reason, created_ms FROM dead_letters "
            "ORDER BY id DESC LIMIT ? OFFSET ?",
            (limit, offset),
        )
        return [DeadLetter(*r) for r in rows]

    async def count_dead_letters(self) -> int:
        row = await self._db.one("SELECT COUNT(*) FROM dead_letters")
        return int(row[0]) if row else 0

    # ---------------------------------------------------------------- search
    async def search_messages(
        self, windows: Mapping[str, int], query: str, before_id: int | None, limit: int
    ) -> list[Message]:
        if not windows or not query:
            return []
        if len(query) >= TRIGRAM:
            await (
                self.index_pending()
            )  # what is committed is searchable: the queue lags commits, never searches
        cols = ", ".join(f"m.{c.strip()}" for c in _MSG_COLS.split(","))
        # The windows travel as one JSON object (conv -> first readable seq): one parameter, however many.
        params: list[Any] = [orjson.dumps(dict(windows)).decode()]
        if len(query) >= TRIGRAM:
            source = "messages_fts f JOIN messages m ON m.id = f.rowid"
            match = "messages_fts MATCH ?"
            params.append('"' + query.replace('"', '""') + '"')  # one phrase: a substring, operators inert
        else:
            source = "messages m"
            match = "json_extract(m.body, '$.text') LIKE ? ESCAPE '\\'"
            params.append(f"%{_like_escape(query)}%")
        params += [before_id if before_id is not None else 2**63 - 1, limit]
        with self._metrics.store_op("sqlite", "search"):
            rows = await self._db.all(
                f"SELECT {cols} FROM {source} JOIN json_each(?1) w ON w.key = m.conv "
                f"WHERE {match.replace('?', '?2')} AND m.seq >= w.value AND m.recalled = 0 AND m.id < ?3 "
                "ORDER BY m.id DESC LIMIT ?4",
                params,
            )
        return [_message(r) for r in rows]

    # ---------------------------------------------------------------- tiering (TierableStore)
    async def oldest(self, before_ts_ms: int, limit: int) -> list[Message]:
        rows = await self._db.all(
            f"SELECT {_MSG_COLS} FROM messages WHERE ts < ? ORDER BY ts, id LIMIT ?", (before_ts_ms, limit)
        )
        return [_message(r) for r in rows]

    async def import_messages(self, messages: Sequence[Message]) -> int:
        """Copies keep their id and seq; one already here (same id or same (conv, seq)) is skipped. The counter
        row only moves forward (MAX), so importing never lowers a conversation's next seq."""
        if not messages:
            return 0
        rows = [
            (
                m.conv,
                m.seq,
                m.id,
                m.sender,
                m.device,
                m.cmid,
                m.kind.value,
                orjson.dumps({} if m.recalled else m.body).decode(),
                m.ts_ms,
                int(m.recalled),
            )
            for m in messages
        ]
        tops: dict[str, int] = {}
        for m in messages:
            tops[m.conv] = max(tops.get(m.conv, 0), m.seq)

        def run(conn: sqlite3.Connection) -> int:
            # rowcount, not total_changes: the latter also counts the search index rows the triggers write
            added = conn.executemany(
                "INSERT INTO messages (conv, seq, id, sender, device, cmid, kind, body, ts, recalled) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                rows,
            ).rowcount
            conn.executemany(
                "INSERT INTO conversations (conv, last_seq) VALUES (?, ?) "
                "ON CONFLICT(conv) DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq)",
                list(tops.items()),
            )
            return added

        return await self._db.write(run)

    async def delete_messages(self, messages: Sequence[Message]) -> int:
        if not messages:
            return 0
        ids = [m.id for m in messages]

        def run(conn: sqlite3.Connection) -> int:
            total = 0
            for i in range(0, len(ids), 10_000):  # below SQLite's bound-variable limit
                chunk = ids[i : i + 10_000]
                total += conn.execute(
                    f"DELETE FROM messages WHERE id IN ({_placeholders(len(chunk))})", chunk
                ).rowcount
            return total

        return await self._db.write(run)
