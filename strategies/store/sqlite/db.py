"""SQLite connections: one thread per connection, a writer (transactions, ``BEGIN IMMEDIATE``) and a reader (WAL
snapshots) per database file; :class:`Db` is the :class:`~strategies.store.sql.dialect.Database` the shared SQL
runs on."""

from __future__ import annotations

import asyncio
import ctypes
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from strategies.context import StrategyContext
from strategies.store.base import DuplicateError, StoreUnavailable
from strategies.store.config import SqliteStoreConfig
from strategies.store.sql.dialect import Result, Tx, TxFactory

T = TypeVar("T")


def _unavailable(exc: Exception) -> StoreUnavailable:
    return StoreUnavailable(f"sqlite: {exc}")


def _name_os_thread(name: str) -> None:
    """Give the OS thread the Python thread's name (Linux ``prctl(PR_SET_NAME)``, 15 bytes), so ``top -H`` and the
    benchmark's per-thread CPU split (``/proc/<pid>/task/<tid>/comm``) can tell the writer from the event loop."""
    with suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)


class SqliteThread:
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


class Db:
    """A database file with a writer thread (transactions) and a reader thread (WAL snapshots)."""

    def __init__(self, path: Path, config: SqliteStoreConfig) -> None:
        self.path = path
        self.config = config
        self.writer = SqliteThread(path, config, f"sqlite-w-{path.stem}")
        self.reader = SqliteThread(path, config, f"sqlite-r-{path.stem}")

    async def open(self, migrations: Sequence[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await self.writer.open()
        await self.reader.open()

        def migrate(conn: sqlite3.Connection) -> None:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            for i, script in enumerate(migrations[version:], start=version + 1):
                for statement in split_sql(script):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {i}")

        await self.write(migrate)

    async def close(self) -> None:
        await self.writer.close()
        await self.reader.close()

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self.writer.run(partial(_transaction, fn))

    async def tx(self, factory: TxFactory[T]) -> T:
        """The whole transaction runs in the writer thread: one hop, however many statements."""
        return await self.write(partial(_drive, factory))

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return await self.write(lambda conn: conn.execute(sql, params).rowcount)

    async def all(self, sql: str, params: Sequence[Any] = (), *, replica: bool = False) -> list[Any]:
        """A read on the reader's WAL snapshot (``replica`` is moot: SQLite has none)."""

        def query(conn: sqlite3.Connection) -> list[Any]:
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise _unavailable(exc) from exc

        return await self.reader.run(query)

    async def one(self, sql: str, params: Sequence[Any] = (), *, replica: bool = False) -> Any:
        rows = await self.all(sql, params)
        return rows[0] if rows else None


def _drive(factory: TxFactory[T], conn: sqlite3.Connection) -> T:
    """Run a shared transaction's statements on ``conn`` (already inside BEGIN IMMEDIATE)."""
    tx: Tx[T] = factory()
    try:
        stmt = next(tx)
        while True:
            cur = (
                conn.executemany(stmt.sql, stmt.params) if stmt.many else conn.execute(stmt.sql, stmt.params)
            )
            stmt = tx.send(Result(cur.fetchall(), cur.rowcount))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def split_sql(script: str) -> list[str]:
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


def resolve(path: str, ctx: StrategyContext) -> Path:
    p = Path(path)
    return p if p.is_absolute() else ctx.data_dir / p
