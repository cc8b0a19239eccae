"""MySQL / MariaDB stores (aiomysql, InnoDB): users and social graph, and messages, so MySQL and MongoDB can be
compared on the same workload. The schema, its indexes and why are in docs/database.md.

* Migrations are numbered lists of statements, applied on start under a named lock (``GET_LOCK``) so nodes that
  start together migrate once; the applied version lives in ``<prefix>wsim_meta``.
* User-keyed tables (users, friends, blocks, user_groups) are split into ``shards`` physical tables by a hash of
  the user id (``_shard``). Rows a query needs live in one shard whenever the query is keyed by one user; only a
  display-name search visits every shard.
* Read/write splitting (user store only): with ``replica_dsn``, only the reads in ``_REPLICA_READS`` go to the
  replica; every cache fill, every read that decides a write or an answer about security, and a user's read right
  after that user's own write on this node go to the primary (a lagging replica would put the old value back in a
  cache for its whole TTL, or show a user the world before their own change).
* Replica health (:class:`_Replica`): per-query timeout, a circuit breaker, a heartbeat row for the lag and a lag
  bound; a replica read that cannot be served by the replica is served by the primary and counted. The node starts
  without its replica and attaches it when it answers.
* Messages: group commit like the SQLite store. A batch locks its conversations' rows (``SELECT ... FOR UPDATE``,
  in sorted order so two nodes cannot deadlock on each other), skips drafts whose dedup key is stored, gives the
  rest ``last_seq + 1, + 2...`` and commits. Sequence numbers are therefore gap-free and never repeat, across any
  number of nodes; a dedup key stored by a racing node in another conversation makes the transaction fail on the
  unique index and the batch is retried (it then finds the original).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

import aiomysql
import orjson
import pymysql

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
from strategies.store.config import MysqlStoreConfig
from strategies.store.group_commit import GroupCommit, MarksBatch

log = logging.getLogger(__name__)
T = TypeVar("T")

_DUP_ENTRY = 1062
_RETRYABLE = {1213, 1205}  # deadlock, lock wait timeout: the transaction was rolled back, run it again
_TABLE_OPTS = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"


class _Cursor(aiomysql.Cursor):  # type: ignore[misc]
    """aiomysql answers every statement that left a warning with a SHOW WARNINGS round trip and a Python warning.
    The statements here leave warnings only by design (IF NOT EXISTS on a re-run migration), so skip both."""

    async def _show_warnings(self, conn: Any) -> None:
        return None


def _shard(user_id: int, shards: int) -> int:
    """Fibonacci hashing of the id: snowflake ids share their low (sequence) bits in bursts, so ``id % n`` would
    crowd a few shards; the golden-ratio multiply spreads them."""
    return (((user_id * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF) >> 32) % shards


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


class _Replica:
    """Whether replica reads are allowed now (pure bookkeeping; :class:`_Mysql` does the I/O).

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


class _Mysql:
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
        self.replica = _Replica(config)
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
                    f"{_TABLE_OPTS}"
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
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        for pool in (self.pool, self.replica.pool):
            if pool is not None:
                await _close_pool(pool)
        self.pool = self.replica.pool = None

    def _require(self) -> aiomysql.Pool:
        if self.pool is None:
            raise StoreUnavailable("mysql store is closed")
        return self.pool

    async def tx(self, fn: Callable[[aiomysql.Cursor], Awaitable[T]], attempts: int = 3) -> T:
        """Run ``fn`` in one transaction on the primary; deadlocks and lock timeouts are retried."""
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
            await cur.execute(sql, params)
            return int(cur.rowcount)

        return await self.tx(run)

    async def all(
        self, sql: str, params: Sequence[Any] = (), *, replica: bool = False
    ) -> list[tuple[Any, ...]]:
        """A read on the primary, or (``replica=True``) on the replica when it may serve reads now, else on the
        primary with the reason counted in ``wsim_store_replica_fallbacks``."""
        start = time.perf_counter()
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


def _in(n: int) -> str:
    return ",".join(["%s"] * n)


def _chunks(items: list[T], size: int) -> Iterable[list[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# =========================================================================== users


def _user_migrations(p: str, shards: int) -> list[list[str]]:
    v1: list[str] = [
        f"""CREATE TABLE IF NOT EXISTS `{p}usernames` (
            username VARCHAR(64) NOT NULL PRIMARY KEY, user_id BIGINT NOT NULL
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci""",
        f"""CREATE TABLE IF NOT EXISTS `{p}sessions` (
            family VARCHAR(64) NOT NULL PRIMARY KEY, user_id BIGINT NOT NULL, device VARCHAR(64) NULL,
            created_ms BIGINT NOT NULL, revoked TINYINT NOT NULL DEFAULT 0, KEY sessions_user (user_id)
        ) {_TABLE_OPTS}""",
        f"""CREATE TABLE IF NOT EXISTS `{p}refresh_tokens` (
            token_hash VARCHAR(128) NOT NULL PRIMARY KEY, user_id BIGINT NOT NULL, family VARCHAR(64) NOT NULL,
            expires_ms BIGINT NOT NULL, used TINYINT NOT NULL DEFAULT 0, device VARCHAR(64) NULL,
            KEY refresh_family (family)
        ) {_TABLE_OPTS}""",
        f"""CREATE TABLE IF NOT EXISTS `{p}friend_requests` (
            id BIGINT NOT NULL PRIMARY KEY, from_user BIGINT NOT NULL, to_user BIGINT NOT NULL,
            message VARCHAR(1024) NOT NULL, status VARCHAR(16) NOT NULL, created_ms BIGINT NOT NULL,
            KEY requests_to (to_user, status), KEY requests_from (from_user, status, to_user)
        ) {_TABLE_OPTS}""",
        f"""CREATE TABLE IF NOT EXISTS `{p}chat_groups` (
            id BIGINT NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL, owner BIGINT NOT NULL,
            created_ms BIGINT NOT NULL, dissolved TINYINT NOT NULL DEFAULT 0
        ) {_TABLE_OPTS}""",
        f"""CREATE TABLE IF NOT EXISTS `{p}members` (
            group_id BIGINT NOT NULL, user_id BIGINT NOT NULL, role VARCHAR(16) NOT NULL, joined_ms BIGINT NOT NULL,
            joined_seq BIGINT NOT NULL, PRIMARY KEY (group_id, user_id)
        ) {_TABLE_OPTS}""",
        f"""CREATE TABLE IF NOT EXISTS `{p}files` (
            id BIGINT NOT NULL PRIMARY KEY, owner BIGINT NOT NULL, name VARCHAR(255) NOT NULL, size BIGINT NOT NULL,
            mime VARCHAR(128) NOT NULL, storage_key VARCHAR(255) NOT NULL, created_ms BIGINT NOT NULL,
            width INT NULL, height INT NULL, thumb_key VARCHAR(255) NULL
        ) {_TABLE_OPTS}""",
        f"""CREATE TABLE IF NOT EXISTS `{p}file_refs` (
            file_id BIGINT NOT NULL, conv VARCHAR(64) NOT NULL, PRIMARY KEY (file_id, conv)
        ) {_TABLE_OPTS}""",
    ]
    for n in range(shards):
        s = f"{n:02d}"
        v1 += [
            f"""CREATE TABLE IF NOT EXISTS `{p}users_{s}` (
                id BIGINT NOT NULL PRIMARY KEY, username VARCHAR(64) NOT NULL, display_name VARCHAR(128) NOT NULL,
                password_hash VARCHAR(255) NOT NULL, bio TEXT NOT NULL, avatar_file BIGINT NULL,
                created_ms BIGINT NOT NULL
            ) {_TABLE_OPTS}""",
            f"""CREATE TABLE IF NOT EXISTS `{p}friends_{s}` (
                user_id BIGINT NOT NULL, friend_id BIGINT NOT NULL, remark VARCHAR(255) NOT NULL DEFAULT '',
                since_ms BIGINT NOT NULL, PRIMARY KEY (user_id, friend_id)
            ) {_TABLE_OPTS}""",
            f"""CREATE TABLE IF NOT EXISTS `{p}blocks_{s}` (
                user_id BIGINT NOT NULL, target BIGINT NOT NULL, at_ms BIGINT NOT NULL, PRIMARY KEY (user_id, target)
            ) {_TABLE_OPTS}""",
            f"""CREATE TABLE IF NOT EXISTS `{p}user_groups_{s}` (
                user_id BIGINT NOT NULL, group_id BIGINT NOT NULL, PRIMARY KEY (user_id, group_id)
            ) {_TABLE_OPTS}""",
        ]
    # v2: refresh_tokens.used holds when the token was exchanged (ms), for the reuse grace period
    v2 = [f"ALTER TABLE `{p}refresh_tokens` MODIFY used BIGINT NOT NULL DEFAULT 0"]
    # v3: one heartbeat row per node, written on the primary and read back from the replica (its lag)
    v3 = [
        f"""CREATE TABLE IF NOT EXISTS `{p}wsim_heartbeat` (
            node VARCHAR(64) NOT NULL PRIMARY KEY, ts_ms BIGINT NOT NULL
        ) {_TABLE_OPTS}"""
    ]
    return [v1, v2, v3]


_USER_COLS = "id, username, display_name, password_hash, bio, avatar_file, created_ms"
_FILE_COLS = "id, owner, name, size, mime, storage_key, created_ms, width, height, thumb_key"
_REQ_COLS = "id, from_user, to_user, message, status, created_ms"


def _user(row: Any) -> User:
    return User(int(row[0]), row[1], row[2], row[3], int(row[6]), row[4], row[5])


def _group(row: Any) -> Group:
    return Group(int(row[0]), row[1], int(row[2]), int(row[3]), bool(row[4]), int(row[5]))


def _member(row: Any) -> Member:
    return Member(int(row[0]), Role(row[1]), int(row[2]), int(row[3]))


def _request(row: Any) -> FriendRequest:
    return FriendRequest(int(row[0]), int(row[1]), int(row[2]), row[3], row[4], int(row[5]))


def _like_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# The only reads that may go to the replica (docs/database.md, "Which reads go where"). Everything else reads the
# primary: every cache fill (get_user fills "profile", list_friends "friends"...; a lagging replica would put the
# old value or a negative answer back in the cache for its whole TTL), every read that decides a write or a
# security answer (refresh, sessions, friend requests, file access), and login right after registration. What is
# left is display-only and tolerates bounded staleness (replica_max_lag_s): directory search, and a user's list of
# pending friend requests, which reads the primary for ``replica_max_lag_s`` after that user's own request write
# on this node (read-your-writes).
_REPLICA_READS = frozenset({"search_users", "get_users", "list_friend_requests"})


class MysqlUserStore:
    """Users and the social graph in MySQL, user-keyed tables sharded by user id (module docstring)."""

    def __init__(self, config: MysqlStoreConfig, ctx: StrategyContext) -> None:
        self._db = _Mysql(config, "users", ctx)
        self._p = config.table_prefix
        self._shards = config.shards
        self._clock = ctx.clock
        self._max_lag_s = config.replica_max_lag_s
        self._wrote: dict[int, float] = {}  # user id -> monotonic time of that user's last request write here

    def _t(self, table: str, user_id: int) -> str:
        return f"`{self._p}{table}_{_shard(user_id, self._shards):02d}`"

    def _g(self, table: str) -> str:
        return f"`{self._p}{table}`"

    def _replica(self, op: str, user_id: int | None = None) -> bool:
        if op not in _REPLICA_READS:
            return False
        if user_id is not None:
            wrote = self._wrote.get(user_id)
            if wrote is not None and self._clock.monotonic() - wrote < self._max_lag_s:
                return False  # read-your-writes: the replica may not have this user's own write yet
        return True

    def _written(self, *user_ids: int) -> None:
        """Remember that these users' data changed on the primary just now (for ``_replica``)."""
        now = self._clock.monotonic()
        for uid in user_ids:
            self._wrote.pop(uid, None)
            self._wrote[uid] = now
        # insertion order is age order: drop what is older than the lag bound
        while self._wrote:
            uid, at = next(iter(self._wrote.items()))
            if now - at < self._max_lag_s:
                break
            del self._wrote[uid]

    async def start(self) -> None:
        await self._db.open(lambda: _user_migrations(self._p, self._shards), self._shards)

    async def close(self) -> None:
        await self._db.close()

    # ---------------------------------------------------------------- users
    async def create_user(self, user: User) -> None:
        async def run(cur: aiomysql.Cursor) -> None:
            await cur.execute(
                f"INSERT INTO {self._g('usernames')} (username, user_id) VALUES (%s, %s)",
                (user.username, user.id),
            )
            await cur.execute(
                f"INSERT INTO {self._t('users', user.id)} ({_USER_COLS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
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

        await self._db.tx(run)

    async def get_user(self, user_id: int) -> User | None:
        row = await self._db.one(
            f"SELECT {_USER_COLS} FROM {self._t('users', user_id)} WHERE id = %s",
            (user_id,),
        )
        return _user(row) if row else None

    async def get_users(self, user_ids: Iterable[int]) -> dict[int, User]:
        by_shard: dict[int, list[int]] = {}
        for uid in set(user_ids):
            by_shard.setdefault(_shard(uid, self._shards), []).append(uid)
        out: dict[int, User] = {}
        for shard, ids in by_shard.items():
            for chunk in _chunks(ids, 500):
                rows = await self._db.all(
                    f"SELECT {_USER_COLS} FROM `{self._p}users_{shard:02d}` WHERE id IN ({_in(len(chunk))})",
                    chunk,
                    replica=self._replica("get_users"),
                )
                out.update((int(r[0]), _user(r)) for r in rows)
        return out

    async def get_user_by_name(self, username: str) -> User | None:
        row = await self._db.one(
            f"SELECT user_id FROM {self._g('usernames')} WHERE username = %s", (username,), replica=False
        )
        if row is None:
            return None
        user_id = int(row[0])
        row = await self._db.one(
            f"SELECT {_USER_COLS} FROM {self._t('users', user_id)} WHERE id = %s", (user_id,), replica=False
        )
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
                sets.append(f"{col} = %s")
                params.append(val)
        if sets:
            await self._db.execute(
                f"UPDATE {self._t('users', user_id)} SET {', '.join(sets)} WHERE id = %s", (*params, user_id)
            )
        row = await self._db.one(
            f"SELECT {_USER_COLS} FROM {self._t('users', user_id)} WHERE id = %s", (user_id,), replica=False
        )
        return _user(row) if row else None

    async def search_users(self, query: str, limit: int) -> list[User]:
        """Username prefix uses the global ``usernames`` index; display-name substrings visit every shard (one
        UNION ALL query), which is why search is a replica read."""
        prefix = _like_escape(query.lower()) + "%"
        sub = "%" + _like_escape(query) + "%"
        parts = [
            f"(SELECT {_USER_COLS} FROM `{self._p}users_{n:02d}` WHERE display_name LIKE %s LIMIT %s)"
            for n in range(self._shards)
        ]
        params: list[Any] = []
        for _ in range(self._shards):
            params += [sub, limit]
        by_name = await self._db.all(
            f"SELECT user_id FROM {self._g('usernames')} WHERE username LIKE %s ORDER BY username LIMIT %s",
            (prefix, limit),
            replica=self._replica("search_users"),
        )
        found = await self.get_users(int(r[0]) for r in by_name)
        rows = await self._db.all(" UNION ALL ".join(parts), params, replica=self._replica("search_users"))
        for r in rows:
            found.setdefault(int(r[0]), _user(r))
        return sorted(found.values(), key=lambda u: u.username)[:limit]

    # ---------------------------------------------------------------- sessions
    async def create_session(self, family: str, user_id: int, device: str | None, created_ms: int) -> None:
        await self._db.execute(
            f"INSERT INTO {self._g('sessions')} (family, user_id, device, created_ms) VALUES (%s, %s, %s, %s)",
            (family, user_id, device, created_ms),
        )

    async def session_active(self, family: str) -> bool:
        row = await self._db.one(f"SELECT revoked FROM {self._g('sessions')} WHERE family = %s", (family,))
        return bool(row) and not row[0]

    async def session_user(self, family: str) -> int | None:
        row = await self._db.one(
            f"SELECT user_id, revoked FROM {self._g('sessions')} WHERE family = %s", (family,)
        )
        return int(row[0]) if row and not row[1] else None

    async def revoke_session(self, family: str) -> int | None:
        async def run(cur: aiomysql.Cursor) -> int | None:
            await cur.execute(
                f"SELECT user_id FROM {self._g('sessions')} WHERE family = %s FOR UPDATE", (family,)
            )
            row = await cur.fetchone()
            if row is None:
                return None
            await cur.execute(f"UPDATE {self._g('sessions')} SET revoked = 1 WHERE family = %s", (family,))
            await cur.execute(f"UPDATE {self._g('refresh_tokens')} SET used = 1 WHERE family = %s", (family,))
            return int(row[0])

        return await self._db.tx(run)

    async def add_refresh_token(self, token: RefreshToken) -> None:
        await self._db.execute(
            f"INSERT INTO {self._g('refresh_tokens')} (token_hash, user_id, family, expires_ms, used, device) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (token.token_hash, token.user_id, token.family, token.expires_ms, int(token.used), token.device),
        )

    async def claim_refresh_token(
        self, token_hash: str, now_ms: int
    ) -> tuple[RefreshToken | None, bool, User | None]:
        async def run(cur: aiomysql.Cursor) -> tuple[RefreshToken | None, bool, User | None]:
            await cur.execute(
                f"SELECT t.token_hash, t.user_id, t.family, t.expires_ms, t.used, t.device, s.revoked "
                f"FROM {self._g('refresh_tokens')} t LEFT JOIN {self._g('sessions')} s ON s.family = t.family "
                "WHERE t.token_hash = %s FOR UPDATE",
                (token_hash,),
            )
            row = await cur.fetchone()
            if row is None:
                return None, False, None
            # `used` holds the wall ms of the first exchange (1 for tokens marked by a logout)
            tok = RefreshToken(
                row[0], int(row[1]), row[2], int(row[3]), bool(row[4]), bool(row[6]), row[5], int(row[4])
            )
            await cur.execute(
                f"SELECT {_USER_COLS} FROM {self._t('users', tok.user_id)} WHERE id = %s", (tok.user_id,)
            )
            urow = await cur.fetchone()
            user = _user(urow) if urow else None
            if tok.used or tok.revoked or tok.expires_ms <= now_ms or user is None:
                return tok, False, user  # a refresh that fails does not spend the token
            await cur.execute(
                f"UPDATE {self._g('refresh_tokens')} SET used = %s WHERE token_hash = %s",
                (max(1, now_ms), token_hash),
            )
            return tok, True, user

        return await self._db.tx(run)

    # ---------------------------------------------------------------- friends
    async def add_friend_request(self, request: FriendRequest) -> None:
        self._written(request.from_user, request.to_user)
        await self._db.execute(
            f"INSERT INTO {self._g('friend_requests')} ({_REQ_COLS}) VALUES (%s, %s, %s, %s, %s, %s)",
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
            f"SELECT {_REQ_COLS} FROM {self._g('friend_requests')} WHERE id = %s", (request_id,)
        )
        return _request(row) if row else None

    async def pending_request(self, from_user: int, to_user: int) -> FriendRequest | None:
        row = await self._db.one(
            f"SELECT {_REQ_COLS} FROM {self._g('friend_requests')} "
            "WHERE from_user = %s AND status = 'pending' AND to_user = %s ORDER BY id DESC LIMIT 1",
            (from_user, to_user),
        )
        return _request(row) if row else None

    async def list_friend_requests(self, user_id: int) -> list[FriendRequest]:
        rows = await self._db.all(
            f"(SELECT {_REQ_COLS} FROM {self._g('friend_requests')} WHERE to_user = %s AND status = 'pending') "
            f"UNION (SELECT {_REQ_COLS} FROM {self._g('friend_requests')} WHERE from_user = %s "
            "AND status = 'pending') ORDER BY id DESC LIMIT 500",
            (user_id, user_id),
            replica=self._replica("list_friend_requests", user_id),
        )
        return [_request(r) for r in rows]

    async def set_friend_request_status(self, request_id: int, status: str) -> None:
        async def run(cur: aiomysql.Cursor) -> tuple[Any, ...] | None:
            await cur.execute(
                f"SELECT from_user, to_user FROM {self._g('friend_requests')} WHERE id = %s FOR UPDATE",
                (request_id,),
            )
            row = await cur.fetchone()
            await cur.execute(
                f"UPDATE {self._g('friend_requests')} SET status = %s WHERE id = %s", (status, request_id)
            )
            return tuple(row) if row else None

        users = await self._db.tx(run)
        if users is not None:
            self._written(int(users[0]), int(users[1]))

    async def add_friendship(self, a: int, b: int, since_ms: int) -> None:
        async def run(cur: aiomysql.Cursor) -> None:
            for x, y in ((a, b), (b, a)):
                await cur.execute(
                    f"INSERT INTO {self._t('friends', x)} (user_id, friend_id, since_ms) VALUES (%s, %s, %s) "
                    "ON DUPLICATE KEY UPDATE user_id = user_id",
                    (x, y, since_ms),
                )

        await self._db.tx(run)

    async def remove_friendship(self, a: int, b: int) -> bool:
        async def run(cur: aiomysql.Cursor) -> bool:
            n = 0
            for x, y in ((a, b), (b, a)):
                await cur.execute(
                    f"DELETE FROM {self._t('friends', x)} WHERE user_id = %s AND friend_id = %s", (x, y)
                )
                n += cur.rowcount
            return n > 0

        return await self._db.tx(run)

    async def list_friends(self, user_id: int) -> list[Friend]:
        rows = await self._db.all(
            f"SELECT friend_id, remark, since_ms FROM {self._t('friends', user_id)} WHERE user_id = %s "
            "ORDER BY since_ms",
            (user_id,),
        )
        return [Friend(int(r[0]), r[1], int(r[2])) for r in rows]

    async def are_friends(self, a: int, b: int) -> bool:
        row = await self._db.one(
            f"SELECT 1 FROM {self._t('friends', a)} WHERE user_id = %s AND friend_id = %s", (a, b)
        )
        return row is not None

    async def set_remark(self, user_id: int, friend_id: int, remark: str) -> bool:
        # CLIENT.FOUND_ROWS is off: rowcount counts changed rows, so check existence for an unchanged remark.
        async def run(cur: aiomysql.Cursor) -> bool:
            table = self._t("friends", user_id)
            await cur.execute(
                f"SELECT 1 FROM {table} WHERE user_id = %s AND friend_id = %s FOR UPDATE",
                (user_id, friend_id),
            )
            if await cur.fetchone() is None:
                return False
            await cur.execute(
                f"UPDATE {table} SET remark = %s WHERE user_id = %s AND friend_id = %s",
                (remark, user_id, friend_id),
            )
            return True

        return await self._db.tx(run)

    async def block(self, user_id: int, target: int, at_ms: int) -> None:
        await self._db.execute(
            f"INSERT INTO {self._t('blocks', user_id)} (user_id, target, at_ms) VALUES (%s, %s, %s) "
            "ON DUPLICATE KEY UPDATE user_id = user_id",
            (user_id, target, at_ms),
        )

    async def unblock(self, user_id: int, target: int) -> bool:
        n = await self._db.execute(
            f"DELETE FROM {self._t('blocks', user_id)} WHERE user_id = %s AND target = %s", (user_id, target)
        )
        return n > 0

    async def list_blocked(self, user_id: int) -> list[int]:
        rows = await self._db.all(
            f"SELECT target FROM {self._t('blocks', user_id)} WHERE user_id = %s ORDER BY at_ms", (user_id,)
        )
        return [int(r[0]) for r in rows]

    async def is_blocked(self, blocker: int, target: int) -> bool:
        row = await self._db.one(
            f"SELECT 1 FROM {self._t('blocks', blocker)} WHERE user_id = %s AND target = %s",
            (blocker, target),
        )
        return row is not None

    # ---------------------------------------------------------------- groups
    def _group_sql(self) -> str:
        return (
            f"SELECT g.id, g.name, g.owner, g.created_ms, g.dissolved, "
            f"(SELECT COUNT(*) FROM {self._g('members')} m WHERE m.group_id = g.id) FROM {self._g('chat_groups')} g"
        )

    async def _insert_members(
        self, cur: aiomysql.Cursor, group_id: int, members: Sequence[Member]
    ) -> list[int]:
        added: list[int] = []
        for m in members:
            await cur.execute(
                f"INSERT INTO {self._g('members')} (group_id, user_id, role, joined_ms, joined_seq) "
                "VALUES (%s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE group_id = group_id",
                (group_id, m.user_id, m.role.value, m.joined_ms, m.joined_seq),
            )
            if cur.rowcount > 0:
                added.append(m.user_id)
                await cur.execute(
                    f"INSERT INTO {self._t('user_groups', m.user_id)} (user_id, group_id) VALUES (%s, %s) "
                    "ON DUPLICATE KEY UPDATE user_id = user_id",
                    (m.user_id, group_id),
                )
        return added

    async def create_group(self, group: Group, members: Sequence[Member]) -> None:
        async def run(cur: aiomysql.Cursor) -> None:
            await cur.execute(
                f"INSERT INTO {self._g('chat_groups')} (id, name, owner, created_ms, dissolved) "
                "VALUES (%s, %s, %s, %s, 0)",
                (group.id, group.name, group.owner, group.created_ms),
            )
            await self._insert_members(cur, group.id, members)

        await self._db.tx(run)

    async def get_group(self, group_id: int) -> Group | None:
        row = await self._db.one(f"{self._group_sql()} WHERE g.id = %s", (group_id,))
        return _group(row) if row else None

    async def rename_group(self, group_id: int, name: str) -> None:
        await self._db.execute(
            f"UPDATE {self._g('chat_groups')} SET name = %s WHERE id = %s", (name, group_id)
        )

    async def dissolve_group(self, group_id: int) -> None:
        await self._db.execute(
            f"UPDATE {self._g('chat_groups')} SET dissolved = 1 WHERE id = %s", (group_id,)
        )

    async def add_members(self, group_id: int, members: Sequence[Member]) -> list[int]:
        async def run(cur: aiomysql.Cursor) -> list[int]:
            return await self._insert_members(cur, group_id, members)

        return await self._db.tx(run)

    async def remove_member(self, group_id: int, user_id: int) -> bool:
        async def run(cur: aiomysql.Cursor) -> bool:
            await cur.execute(
                f"DELETE FROM {self._g('members')} WHERE group_id = %s AND user_id = %s", (group_id, user_id)
            )
            n = int(cur.rowcount)
            await cur.execute(
                f"DELETE FROM {self._t('user_groups', user_id)} WHERE user_id = %s AND group_id = %s",
                (user_id, group_id),
            )
            return n > 0

        return await self._db.tx(run)

    async def set_role(self, group_id: int, user_id: int, role: Role) -> bool:
        async def run(cur: aiomysql.Cursor) -> bool:
            await cur.execute(
                f"SELECT 1 FROM {self._g('members')} WHERE group_id = %s AND user_id = %s FOR UPDATE",
                (group_id, user_id),
            )
            if await cur.fetchone() is None:
                return False
            await cur.execute(
                f"UPDATE {self._g('members')} SET role = %s WHERE group_id = %s AND user_id = %s",
                (role.value, group_id, user_id),
            )
            return True

        return await self._db.tx(run)

    async def get_members(self, group_id: int) -> list[Member]:
        rows = await self._db.all(
            f"SELECT user_id, role, joined_ms, joined_seq FROM {self._g('members')} WHERE group_id = %s "
            "ORDER BY joined_ms, user_id",
            (group_id,),
        )
        return [_member(r) for r in rows]

    async def get_member(self, group_id: int, user_id: int) -> Member | None:
        row = await self._db.one(
            f"SELECT user_id, role, joined_ms, joined_seq FROM {self._g('members')} "
            "WHERE group_id = %s AND user_id = %s",
            (group_id, user_id),
        )
        return _member(row) if row else None

    async def list_user_groups(self, user_id: int) -> list[Group]:
        rows = await self._db.all(
            f"SELECT group_id FROM {self._t('user_groups', user_id)} WHERE user_id = %s", (user_id,)
        )
        ids = [int(r[0]) for r in rows]
        if not ids:
            return []
        out: list[Group] = []
        for chunk in _chunks(ids, 500):
            rows = await self._db.all(f"{self._group_sql()} WHERE g.id IN ({_in(len(chunk))})", chunk)
            out += [_group(r) for r in rows]
        return sorted(out, key=lambda g: g.id)

    # ---------------------------------------------------------------- files
    async def add_file(self, meta: FileMeta) -> None:
        await self._db.execute(
            f"INSERT INTO {self._g('files')} ({_FILE_COLS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
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
        row = await self._db.one(f"SELECT {_FILE_COLS} FROM {self._g('files')} WHERE id = %s", (file_id,))
        if row is None:
            return None
        return FileMeta(
            int(row[0]), int(row[1]), row[2], int(row[3]), row[4], row[5], int(row[6]), row[7], row[8], row[9]
        )

    async def add_file_ref(self, file_id: int, conv: str) -> None:
        await self._db.execute(
            f"INSERT INTO {self._g('file_refs')} (file_id, conv) VALUES (%s, %s) ON DUPLICATE KEY UPDATE conv = conv",
            (file_id, conv),
        )

    async def file_convs(self, file_id: int) -> list[str]:
        rows = await self._db.all(
            f"SELECT conv FROM {self._g('file_refs')} WHERE file_id = %s",
            (file_id,),
        )
        return [r[0] for r in rows]


# =========================================================================== messages


def _message_migrations(p: str) -> list[list[str]]:
    return [
        [
            # Head of each conversation: its row lock serializes seq allocation across nodes.
            f"""CREATE TABLE IF NOT EXISTS `{p}conversations` (
                conv VARCHAR(64) NOT NULL PRIMARY KEY, last_seq BIGINT NOT NULL, last_id BIGINT NULL,
                last_ts BIGINT NULL
            ) {_TABLE_OPTS}""",
            # Clustered on (conv, seq): a history page is one contiguous range read of the primary key.
            f"""CREATE TABLE IF NOT EXISTS `{p}messages` (
                conv VARCHAR(64) NOT NULL, seq BIGINT NOT NULL, id BIGINT NOT NULL, sender BIGINT NOT NULL,
                device VARCHAR(64) NOT NULL, cmid VARCHAR(128) NOT NULL, kind VARCHAR(16) NOT NULL,
                body MEDIUMTEXT NOT NULL, ts BIGINT NOT NULL, recalled TINYINT NOT NULL DEFAULT 0,
                dedup_key VARCHAR(255) NULL,
                PRIMARY KEY (conv, seq), UNIQUE KEY messages_id (id), UNIQUE KEY messages_dedup (dedup_key),
                KEY messages_ts (ts)
            ) {_TABLE_OPTS}""",
            f"""CREATE TABLE IF NOT EXISTS `{p}marks` (
                conv VARCHAR(64) NOT NULL, user_id BIGINT NOT NULL, delivered_seq BIGINT NOT NULL DEFAULT 0,
                read_seq BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (conv, user_id)
            ) {_TABLE_OPTS}""",
            f"""CREATE TABLE IF NOT EXISTS `{p}dead_letters` (
                id BIGINT NOT NULL PRIMARY KEY, msg_id BIGINT NOT NULL, conv VARCHAR(64) NOT NULL, seq BIGINT NOT NULL,
                user_id BIGINT NOT NULL, device VARCHAR(64) NOT NULL, attempts INT NOT NULL,
                reason VARCHAR(255) NOT NULL, created_ms BIGINT NOT NULL
            ) {_TABLE_OPTS}""",
        ],
        # ---- version 2: message search (docs/protocol.md "Search"). The text as a stored generated column with a
        # case-insensitive collation; the FULLTEXT ngram index on it is added by ``_ensure_fulltext`` where the
        # server has the ngram parser (MySQL; MariaDB has none and searches with LIKE within the caller's
        # conversations). A recall sets body to {} and so clears the column.
        [
            f"""ALTER TABLE `{p}messages` ADD COLUMN search_text MEDIUMTEXT CHARACTER SET utf8mb4
                COLLATE utf8mb4_unicode_ci AS (JSON_UNQUOTE(JSON_EXTRACT(body, '$.text'))) STORED""",
        ],
        # ---- end of version 2
    ]


_MSG_COLS = "id, conv, seq, sender, device, cmid, kind, body, ts, recalled"


def _message(row: Any) -> Message:
    return Message(
        int(row[0]),
        row[1],
        int(row[2]),
        int(row[3]),
        row[4],
        row[5],
        MessageKind(row[6]),
        orjson.loads(row[7]),
        int(row[8]),
        bool(row[9]),
    )


class MysqlMessageStore:
    """Messages, marks and dead letters in MySQL with group commit (module docstring)."""

    def __init__(self, config: MysqlStoreConfig, ctx: StrategyContext) -> None:
        self._db = _Mysql(config, "messages", ctx)
        self._p = config.table_prefix
        self._metrics = ctx.metrics
        self._gc = GroupCommit("mysql", self._commit, config.max_batch, ctx.metrics)
        self._fulltext = False

    def _g(self, table: str) -> str:
        return f"`{self._p}{table}`"

    async def start(self) -> None:
        await self._db.open(lambda: _message_migrations(self._p), None)
        self._fulltext = await self._ensure_fulltext()
        self._gc.start()

    async def _ensure_fulltext(self) -> bool:
        """Add the FULLTEXT ngram index where the server can build one; False: search uses LIKE only."""
        row = await self._db.one("SELECT VERSION()")
        if row is None or "mariadb" in str(row[0]).lower():
            return False
        exists = await self._db.one(
            "SELECT 1 FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s "
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

    # ---------------------------------------------------------------- group commit
    async def append(self, draft: MessageDraft) -> AppendResult:
        return await self._gc.append(draft)

    async def set_marks(self, conv: str, user_id: int, *, delivered: int = 0, read: int = 0) -> None:
        await self._gc.set_marks(conv, user_id, delivered, read)

    def queue_marks(self, conv: str, user_id: int, *, delivered: int = 0, read: int = 0) -> None:
        self._gc.queue_marks(conv, user_id, delivered, read)

    async def _commit(self, drafts: list[MessageDraft], marks: MarksBatch) -> list[AppendResult]:
        return await self._db.tx(lambda cur: self._write_batch(cur, drafts, marks), attempts=5)

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
                f"SELECT {_MSG_COLS}, dedup_key FROM {self._g('messages')} WHERE dedup_key IN ({_in(len(keys))})",
                keys,
            )
            originals = {r[10]: _message(r) for r in await cur.fetchall()}
        results: list[AppendResult] = []
        rows: list[tuple[Any, ...]] = []
        heads: dict[str, Message] = {}
        for d in drafts:
            if d.dedup_key is not None and d.dedup_key in originals:
                results.append(AppendResult(originals[d.dedup_key], False))
                continue
            seq = last[d.conv] + 1
            last[d.conv] = seq
            msg = Message(d.id, d.conv, seq, d.sender, d.device, d.cmid, d.kind, d.body, d.ts_ms)
            if d.dedup_key is not None:
                originals[d.dedup_key] = msg  # a second copy in the same batch is its duplicate
            heads[d.conv] = msg
            results.append(AppendResult(msg, True))
            rows.append(
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
                    d.dedup_key,
                )
            )
        if rows:
            await cur.executemany(
                f"INSERT INTO {self._g('messages')} (conv, seq, id, sender, device, cmid, kind, body, ts, dedup_key) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                rows,
            )
            # One multi-row statement (an executemany UPDATE would be a round trip per conversation).
            await cur.executemany(
                f"INSERT INTO {self._g('conversations')} (conv, last_seq, last_id, last_ts) VALUES (%s, %s, %s, %s) "
                "ON DUPLICATE KEY UPDATE last_seq = VALUES(last_seq), last_id = VALUES(last_id), "
                "last_ts = VALUES(last_ts)",
                [(c, m.seq, m.id, m.ts_ms) for c, m in sorted(heads.items())],
            )
        return results

    # ---------------------------------------------------------------- reads
    async def get_message(self, msg_id: int) -> Message | None:
        row = await self._db.one(f"SELECT {_MSG_COLS} FROM {self._g('messages')} WHERE id = %s", (msg_id,))
        return _message(row) if row else None

    async def messages_after(self, conv: str, after_seq: int, limit: int) -> list[Message]:
        with self._metrics.store_op("mysql", "messages_after"):
            rows = await self._db.all(
                f"SELECT {_MSG_COLS} FROM {self._g('messages')} WHERE conv = %s AND seq > %s ORDER BY seq LIMIT %s",
                (conv, after_seq, limit),
            )
        return [_message(r) for r in rows]

    async def messages_before(self, conv: str, before_seq: int, limit: int) -> list[Message]:
        with self._metrics.store_op("mysql", "messages_before"):
            rows = await self._db.all(
                f"SELECT {_MSG_COLS} FROM {self._g('messages')} WHERE conv = %s AND seq < %s "
                "ORDER BY seq DESC LIMIT %s",
                (conv, before_seq, limit),
            )
        return [_message(r) for r in reversed(rows)]

    async def heads(self, convs: Iterable[str]) -> dict[str, ConversationHead]:
        keys = sorted(set(convs))
        out: dict[str, ConversationHead] = {}
        cols = ", ".join(f"m.{c.strip()}" for c in _MSG_COLS.split(","))
        for chunk in _chunks(keys, 500):
            rows = await self._db.all(
                f"SELECT c.conv, c.last_seq, {cols} FROM {self._g('conversations')} c "
                f"LEFT JOIN {self._g('messages')} m ON m.conv = c.conv AND m.seq = c.last_seq "
                f"WHERE c.conv IN ({_in(len(chunk))}) AND c.last_seq > 0",
                chunk,
            )
            for r in rows:
                last = _message(r[2:]) if r[2] is not None else None
                out[r[0]] = ConversationHead(r[0], int(r[1]), last)
        return out

    async def mark_recalled(self, msg_id: int) -> bool:
        n = await self._db.execute(
            f"UPDATE {self._g('messages')} SET recalled = 1, body = '{{}}' WHERE id = %s AND recalled = 0",
            (msg_id,),
        )
        return n > 0

    async def get_marks(self, conv: str) -> dict[int, Marks]:
        rows = await self._db.all(
            f"SELECT user_id, delivered_seq, read_seq FROM {self._g('marks')} WHERE conv = %s", (conv,)
        )
        return {int(r[0]): Marks(int(r[1]), int(r[2])) for r in rows}

    async def user_marks(self, user_id: int, convs: Iterable[str]) -> dict[str, Marks]:
        keys = sorted(set(convs))
        out: dict[str, Marks] = {}
        for chunk in _chunks(keys, 500):
            rows = await self._db.all(
                f"SELECT conv, delivered_seq, read_seq FROM {self._g('marks')} "
                f"WHERE user_id = %s AND conv IN ({_in(len(chunk))})",
                (user_id, *chunk),
            )
            out.update((r[0], Marks(int(r[1]), int(r[2]))) for r in rows)
        return out

    # ---------------------------------------------------------------- search
    async def search_messages(
        self, windows: Mapping[str, int], query: str, before_id: int | None, limit: int
    ) -> list[Message]:
        if not windows or not query:
            return []
        # LIKE is the exact check on every path; with the ngram index, MATCH narrows the rows first. The
        # ngram index holds 2-grams (ngram_token_size default), so a 1-character query uses LIKE alone.
        text = "search_text LIKE %s"
        tail: list[Any] = [f"%{_like_escape(query)}%"]
        if self._fulltext and len(query) >= 2:
            text += " AND MATCH(search_text) AGAINST (%s IN BOOLEAN MODE)"
            tail.append('"' + query.replace('"', " ") + '"')
        tail += [before_id if before_id is not None else 2**63 - 1, limit]
        found: list[Message] = []
        for chunk in _chunks(sorted(windows.items()), 500):  # bounded statements; pages merge by id below
            where = " OR ".join(["(conv = %s AND seq >= %s)"] * len(chunk))
            with self._metrics.store_op("mysql", "search"):
                rows = await self._db.all(
                    f"SELECT {_MSG_COLS} FROM {self._g('messages')} WHERE ({where}) AND {text} "
                    "AND recalled = 0 AND id < %s ORDER BY id DESC LIMIT %s",
                    [*(v for item in chunk for v in item), *tail],
                )
            found += [_message(r) for r in rows]
        found.sort(key=lambda m: m.id, reverse=True)
        return found[:limit]

    # ---------------------------------------------------------------- dead letters
    async def add_dead_letter(self, letter: DeadLetter) -> None:
        await self._db.execute(
            f"INSERT INTO {self._g('dead_letters')} "
            "(id, msg_id, conv, seq, user_id, device, attempts, reason, created_ms) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
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
            "SELECT id, msg_id, conv, seq, user_id, device, attempts, reason, created_ms "
            f"FROM {self._g('dead_letters')} ORDER BY id DESC LIMIT %s OFFSET %s",
            (limit, offset),
        )
        return [
            DeadLetter(int(r[0]), int(r[1]), r[2], int(r[3]), int(r[4]), r[5], int(r[6]), r[7], int(r[8]))
            for r in rows
        ]

    async def count_dead_letters(self) -> int:
        row = await self._db.one(f"SELECT COUNT(*) FROM {self._g('dead_letters')}")
        return int(row[0]) if row else 0

    # ---------------------------------------------------------------- tiering (TierableStore)
    async def oldest(self, before_ts_ms: int, limit: int) -> list[Message]:
        rows = await self._db.all(
            f"SELECT {_MSG_COLS} FROM {self._g('messages')} WHERE ts < %s ORDER BY ts, id LIMIT %s",
            (before_ts_ms, limit),
        )
        return [_message(r) for r in rows]

    async def import_messages(self, messages: Sequence[Message]) -> int:
        """An insert that is a no-op on the (conv, seq) primary key and the id key: a copy already here is skipped. The head
        only moves forward (GREATEST), so importing never lowers a conversation's counter."""
        if not messages:
            return 0

        async def run(cur: aiomysql.Cursor) -> int:
            await cur.executemany(
                f"INSERT INTO {self._g('messages')} "
                "(conv, seq, id, sender, device, cmid, kind, body, ts, recalled) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE id = id",
                [
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
                ],
            )
            added = int(cur.rowcount)
            top: dict[str, int] = {}
            for m in messages:
                top[m.conv] = max(top.get(m.conv, 0), m.seq)
            await cur.executemany(
                f"INSERT INTO {self._g('conversations')} (conv, last_seq) VALUES (%s, %s) "
                "ON DUPLICATE KEY UPDATE last_seq = GREATEST(last_seq, VALUES(last_seq))",
                sorted(top.items()),
            )
            return added

        return await self._db.tx(run)

    async def delete_messages(self, messages: Sequence[Message]) -> int:
        if not messages:
            return 0
        total = 0
        for chunk in _chunks([m.id for m in messages], 1000):
            total += await self._db.execute(
                f"DELETE FROM {self._g('messages')} WHERE id IN ({_in(len(chunk))})", chunk
            )
        return total
