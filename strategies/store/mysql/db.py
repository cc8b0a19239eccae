"""MySQL connections: a pool to the primary, optionally one to a replica with its health bookkeeping, and the
migration runner; :class:`Mysql` is the :class:`~strategies.store.sql.dialect.Database` the shared SQL runs on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

import aiomysql
import pymysql

from strategies._aio import cancel_and_wait
from strategies.context import StrategyContext
from strategies.store.base import DuplicateError, StoreUnavailable
from strategies.store.config import MysqlStoreConfig
from strategies.store.mysql.schema import TABLE_OPTS
from strategies.store.sql.dialect import Result, Tx, TxFactory

log = logging.getLogger(__name__)
T = TypeVar("T")

_DUP_ENTRY = 1062
_RETRYABLE = {1213, 1205}  # deadlock, lock wait timeout: the transaction was rolled back, run it again


class _Cursor(aiomysql.Cursor):  # type: ignore[misc]
    """aiomysql answers every statement that left a warning with a SHOW WARNINGS round trip and a Python warning.
    The statements here leave warnings only by design (IF NOT EXISTS on a re-run migration), so skip both."""

    async def _show_warnings(self, conn: Any) -> None:
        return None


@dataclass(frozen=True)
class _Dsn:
    host: str
    port: int
    user: str
    password: str
    db: str


def parse_dsn(dsn: str) -> _Dsn:
    u = urlparse(dsn)
    if u.scheme not in ("mysql", "mariadb") or not u.path.strip("/"):
        raise ValueError(f"a MySQL DSN looks like mysql://user:password@host:3306/database, not {dsn!r}")
    return _Dsn(
        u.hostname or "127.0.0.1",
        u.port or 3306,
        unquote(u.username or "root"),
        unquote(u.password or ""),
        u.path.strip("/"),
    )


class _ReplicaFailed(StoreUnavailable):
    def __init__(self, reason: str, exc: BaseException) -> None:
        super().__init__(f"mysql replica {reason}: {exc!r}")
        self.reason = reason


class Replica:
    """Whether replica reads are allowed now (pure bookkeeping; :class:`Mysql` does the I/O).

    Allowed when the replica is attached, its circuit breaker is closed and its measured lag is known and within
    ``replica_max_lag_s``. ``replica_breaker_failures`` consecutive failures (errors or timeouts) open the breaker
    for ``replica_breaker_open_s``; after that the next read is a probe: a success closes the breaker, a failure
    opens it again at once.
    """

    def __init__(self, config: MysqlStoreConfig) -> None:
        self.cfg = config
        self.pool: aiomysql.Pool | None = None
        self.failures = 0
        self.open_until = 0.0
        self.lag_s: float | None = None

    def refusal(self, now: float) -> str | None:
        """Why a replica read must go to the primary now (the fallback reason), or None if it may go to the replica."""
        if self.pool is None:
            return "detached"
        if now < self.open_until:
            return "breaker_open"
        if self.lag_s is None:
            return "lag_unknown"
        if self.lag_s > self.cfg.replica_max_lag_s:
            return "lagging"
        return None

    def succeeded(self) -> None:
        self.failures = 0

    def failed(self, now: float) -> None:
        self.failures += 1
        if self.failures >= self.cfg.replica_breaker_failures:
            self.open_until = now + self.cfg.replica_breaker_open_s
            self.failures = self.cfg.replica_breaker_failures - 1  # half-open: one more failure reopens it


class Mysql:
    """A connection pool to the primary (and optionally one to a replica), with transactions that map driver
    errors to the store contract's exceptions."""

    def __init__(self, config: MysqlStoreConfig, store_name: str, ctx: StrategyContext) -> None:
        self.config = config
        self.name = store_name
        self.metrics = ctx.metrics
        self.clock = ctx.clock
        self.node = ctx.node_name
        self.primary_dsn = parse_dsn(config.dsn)
        self.replica_dsn = parse_dsn(config.replica_dsn) if config.replica_dsn else None
        self.pool: aiomysql.Pool | None = None
        self.replica = Replica(config)
        self._watcher: asyncio.Task[None] | None = None
        self._heartbeat = f"`{config.table_prefix}wsim_heartbeat`"

    async def _pool(self, dsn: _Dsn, minsize: int | None = None) -> aiomysql.Pool:
        return await aiomysql.create_pool(
            host=dsn.host,
            port=dsn.port,
            user=dsn.user,
            password=dsn.password,
            db=dsn.db,
            minsize=self.config.pool_min if minsize is None else minsize,
            maxsize=max(self.config.pool_max, self.config.pool_min),
            autocommit=True,
            charset="utf8mb4",
            connect_timeout=self.config.connect_timeout_s,
            cursorclass=_Cursor,
        )

    async def open(self, migrations: Callable[[], list[list[str]]], shards: int | None) -> None:
        d = self.primary_dsn
        try:
            conn = await aiomysql.connect(
                host=d.host,
                port=d.port,
                user=d.user,
                password=d.password,
                autocommit=True,
                charset="utf8mb4",
                connect_timeout=self.config.connect_timeout_s,
                cursorclass=_Cursor,
            )
        except pymysql.err.MySQLError as exc:
            raise StoreUnavailable(f"mysql: cannot connect to {d.host}:{d.port}: {exc}") from exc
        try:
            async with conn.cursor() as cur:
                await cur.execute(f"CREATE DATABASE IF NOT EXISTS `{d.db}` CHARACTER SET utf8mb4")
        finally:
            conn.close()
        try:
            self.pool = await self._pool(d)
            await self._migrate(migrations(), shards)
        except pymysql.err.MySQLError as exc:
            await self.close()
            raise StoreUnavailable(f"mysql: {exc}") from exc
        if self.replica_dsn is not None:
            # The node starts without its replica: reads go to the primary until the watcher attaches it.
            self._set_up(False)
            self.metrics.replica_lag.labels(self.name).set(-1)
            self._watcher = asyncio.create_task(self._watch_replica(), name=f"mysql-replica-{self.name}")

    # ---------------------------------------------------------------- replica health
    def _set_up(self, up: bool) -> None:
        self.metrics.replica_up.labels(self.name).set(1 if up else 0)

    async def _watch_replica(self) -> None:
        """Every ``replica_check_s``: write this node's heartbeat row on the primary, then attach the replica if it
        is detached, or read the heartbeat back from it (its lag). A failed check counts as a replica failure."""
        assert self.replica_dsn is not None
        while True:
            try:
                await self._check_replica()
            except Exception:  # the watcher must outlive any one bad check
                log.exception("mysql %s: replica check failed", self.name)
            await self.clock.sleep(self.config.replica_check_s)

    async def _check_replica(self) -> None:
        try:
            await self.execute(
                f"INSERT INTO {self._heartbeat} (node, ts_ms) VALUES (%s, %s) "
                "ON DUPLICATE KEY UPDATE ts_ms = VALUES(ts_ms)",
                (self.node, self.clock.wall_ms()),
            )
        except StoreUnavailable as exc:
            log.warning("mysql %s: heartbeat not written: %s", self.name, exc)
        if self.replica.pool is None:
            await self._attach()
        if self.replica.pool is not None:
            await self._measure_lag()
        self._set_up(self.replica.refusal(self.clock.monotonic()) in (None, "lagging"))

    async def _attach(self) -> None:
        assert self.replica_dsn is not None
        timeout = self.config.connect_timeout_s
        try:
            # minsize=0: the pool answers at once; the first connection below proves the replica answers.
            pool = await self._pool(self.replica_dsn, minsize=0)
        except (pymysql.err.MySQLError, OSError) as exc:  # pragma: no cover - minsize=0 does not connect
            log.warning("mysql %s: replica not attached: %s", self.name, exc)
            return
        try:
            async with asyncio.timeout(timeout):
                async with pool.acquire() as conn, conn.cursor() as cur:
                    await cur.execute("SELECT 1")
        except (TimeoutError, pymysql.err.MySQLError, OSError) as exc:
            log.warning(
                "mysql %s: replica %s:%s does not answer (%r); reads use the primary",
                self.name,
                self.replica_dsn.host,
                self.replica_dsn.port,
                exc,
            )
            await _close_pool(pool)
            return
        log.info("mysql %s: replica %s:%s attached", self.name, self.replica_dsn.host, self.replica_dsn.port)
        self.replica.pool = pool
        self.replica.failures = 0
        self.replica.open_until = 0.0

    async def _measure_lag(self) -> None:
        try:
            rows = await self._replica_rows(
                f"SELECT ts_ms FROM {self._heartbeat} WHERE node = %s", (self.node,)
            )
        except StoreUnavailable as exc:
            if self.replica.lag_s is not None:
                log.warning("mysql %s: replica lag unknown, reads use the primary: %s", self.name, exc)
            self.replica.lag_s = None
            self.metrics.replica_lag.labels(self.name).set(-1)
            return
        # No row yet: the replica has not seen this node's first heartbeat, so it is at least that far behind.
        lag = (self.clock.wall_ms() - int(rows[0][0])) / 1000 if rows else None
        self.replica.lag_s = None if lag is None else max(0.0, lag)
        self.metrics.replica_lag.labels(self.name).set(-1 if lag is None else max(0.0, lag))

    async def _replica_rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """One read on the replica within ``replica_read_timeout_s``; a failure feeds the breaker and raises
        StoreUnavailable. A connection cut off mid-query is closed, never returned to the pool."""
        pool = self.replica.pool
        if pool is None:
            raise _ReplicaFailed("detached", StoreUnavailable("mysql replica is not attached"))
        conn: Any = None
        try:
            async with asyncio.timeout(self.config.replica_read_timeout_s):
                conn = await pool.acquire()
                async with conn.cursor() as cur:
                    await cur.execute(sql, params)
                    rows = list(await cur.fetchall())
        except (TimeoutError, pymysql.err.MySQLError, OSError) as exc:
            if conn is not None:
                conn.close()
            self.replica.failed(self.clock.monotonic())
            raise _ReplicaFailed("timeout" if isinstance(exc, TimeoutError) else "error", exc) from exc
        finally:
            if conn is not None:
                pool.release(conn)
        self.replica.succeeded()
        return rows

    async def _migrate(self, migrations: list[list[str]], shards: int | None) -> None:
        p = self.config.table_prefix
        lock = f"wsim_migrate_{self.primary_dsn.db}_{p}{self.name}"[:64]
        assert self.pool is not None
        async with self.pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute("SELECT GET_LOCK(%s, 60)", (lock,))
            try:
                await cur.execute(
                    f"CREATE TABLE IF NOT EXISTS `{p}wsim_meta` (k VARCHAR(64) PRIMARY KEY, v VARCHAR(255) NOT NULL) "
                    f"{TABLE_OPTS}"
                )
                await cur.execute(f"SELECT v FROM `{p}wsim_meta` WHERE k = %s", (f"{self.name}_version",))
                row = await cur.fetchone()
                version = int(row[0]) if row else 0
                if shards is not None:
                    await cur.execute(f"SELECT v FROM `{p}wsim_meta` WHERE k = 'shards'")
                    row = await cur.fetchone()
                    if row is not None and int(row[0]) != shards:
                        raise ValueError(
                            f"mysql store was created with shards={row[0]}, configured shards={shards}: "
                            "re-sharding is a data migration, set shards back"
                        )
                    if row is None:
                        await cur.execute(
                            f"INSERT INTO `{p}wsim_meta` (k, v) VALUES ('shards', %s)", (str(shards),)
                        )
                # DDL commits implicitly in MySQL: each migration records its version right after it, and
                # every statement is idempotent (IF NOT EXISTS) so a migration cut short can run again.
                for i, statements in enumerate(migrations[version:], start=version + 1):
                    for sql in statements:
                        await cur.execute(sql)
                    await cur.execute(
                        f"INSERT INTO `{p}wsim_meta` (k, v) VALUES (%s, %s) ON DUPLICATE KEY UPDATE v = VALUES(v)",
                        (f"{self.name}_version", str(i)),
                    )
            finally:
                await cur.execute("SELECT RELEASE_LOCK(%s)", (lock,))

    async def close(self) -> None:
        await cancel_and_wait(self._watcher)
        self._watcher = None
        for pool in (self.pool, self.replica.pool):
            if pool is not None:
                await _close_pool(pool)
        self.pool = self.replica.pool = None

    def _require(self) -> aiomysql.Pool:
        if self.pool is None:
            raise StoreUnavailable("mysql store is closed")
        return self.pool

    async def tx(self, factory: TxFactory[T], attempts: int = 3) -> T:
        """Run a shared transaction (``?`` placeholders) on the primary; deadlocks and lock timeouts are retried."""
        return await self.cursor_tx(partial(_drive, factory), attempts)

    async def cursor_tx(self, fn: Callable[[aiomysql.Cursor], Awaitable[T]], attempts: int = 3) -> T:
        """Run ``fn`` with a driver cursor (``%s`` placeholders) in one transaction on the primary; deadlocks and
        lock timeouts are retried (``fn`` runs again from the start)."""
        pool = self._require()
        for attempt in range(attempts):
            try:
                async with pool.acquire() as conn:
                    await conn.begin()
                    try:
                        async with conn.cursor() as cur:
                            result = await fn(cur)
                        await conn.commit()
                    except BaseException:
                        try:
                            await conn.rollback()
                        except Exception:
                            conn.close()  # the pool drops a closed connection
                        raise
                    return result
            except pymysql.err.IntegrityError as exc:
                if exc.args and exc.args[0] == _DUP_ENTRY:
                    raise DuplicateError(str(exc)) from exc
                raise StoreUnavailable(f"mysql: {exc}") from exc
            except pymysql.err.OperationalError as exc:
                if exc.args and exc.args[0] in _RETRYABLE and attempt + 1 < attempts:
                    continue
                raise StoreUnavailable(f"mysql: {exc}") from exc
            except (pymysql.err.MySQLError, OSError) as exc:
                raise StoreUnavailable(f"mysql: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        async def run(cur: aiomysql.Cursor) -> int:
            await cur.execute(_native(sql), params)
            return int(cur.rowcount)

        return await self.cursor_tx(run)

    async def all(
        self, sql: str, params: Sequence[Any] = (), *, replica: bool = False
    ) -> list[tuple[Any, ...]]:
        """A read on the primary, or (``replica=True``) on the replica when it may serve reads now, else on the
        primary with the reason counted in ``wsim_store_replica_fallbacks``."""
        start = time.perf_counter()
        sql = _native(sql)
        if replica and self.replica_dsn is not None:
            reason = self.replica.refusal(self.clock.monotonic())
            if reason is None:
                try:
                    rows = await self._replica_rows(sql, params)
                except _ReplicaFailed as exc:
                    reason = exc.reason
                    log.warning("mysql %s: replica read failed, using the primary: %s", self.name, exc)
                else:
                    self.metrics.store_seconds.labels("mysql-replica", f"{self.name}_read").observe(
                        time.perf_counter() - start
                    )
                    return rows
            self.metrics.replica_fallbacks.labels(self.name, reason).inc()
        pool = self._require()
        try:
            async with pool.acquire() as conn, conn.cursor() as cur:
                await cur.execute(sql, params)
                rows = await cur.fetchall()
        except (pymysql.err.MySQLError, OSError) as exc:
            raise StoreUnavailable(f"mysql: {exc}") from exc
        self.metrics.store_seconds.labels("mysql-primary", f"{self.name}_read").observe(
            time.perf_counter() - start
        )
        return list(rows)

    async def one(self, sql: str, params: Sequence[Any] = (), *, replica: bool = False) -> Any:
        rows = await self.all(sql, params, replica=replica)
        return rows[0] if rows else None


async def _close_pool(pool: aiomysql.Pool, timeout_s: float = 5.0) -> None:
    """Close a pool within a deadline; connections still busy after it (a hung server) are dropped."""
    pool.close()
    try:
        async with asyncio.timeout(timeout_s):
            await pool.wait_closed()
    except TimeoutError:
        pool.terminate()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await pool.wait_closed()


@lru_cache(maxsize=4096)
def _native(sql: str) -> str:
    """A ``?``-placeholder statement in PyMySQL's ``%s`` style (cached: the statements are a bounded set of texts,
    sharded tables included)."""
    return sql.replace("?", "%s")


async def _drive(factory: TxFactory[T], cur: aiomysql.Cursor) -> T:
    """Run a shared transaction's statements on ``cur`` (inside ``cursor_tx``'s transaction)."""
    tx: Tx[T] = factory()
    try:
        stmt = next(tx)
        while True:
            if stmt.many:
                await cur.executemany(_native(stmt.sql), stmt.params)
            else:
                await cur.execute(_native(stmt.sql), stmt.params)
            found = list(await cur.fetchall()) if cur.description else []
            stmt = tx.send(Result(found, int(cur.rowcount)))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
