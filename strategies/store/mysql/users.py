"""The MySQL user store: the shared SQL (strategies/store/sql/users.py) on sharded user-keyed tables, with a global
``usernames`` index, a per-user copy of group membership (``user_groups``) and read/write splitting (module
docstring of strategies/store/mysql)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from core.models import Group, User
from strategies.context import StrategyContext
from strategies.store.base import UserStore
from strategies.store.config import MysqlStoreConfig
from strategies.store.mysql.db import Mysql
from strategies.store.mysql.schema import user_migrations
from strategies.store.sql import rows
from strategies.store.sql.dialect import MYSQL, Stmt, Tx, chunks, like_escape, placeholders
from strategies.store.sql.users import SqlUserStore


def shard(user_id: int, shards: int) -> int:
    """Fibonacci hashing of the id: snowflake ids share their low (sequence) bits in bursts, so ``id % n`` would
    crowd a few shards; the golden-ratio multiply spreads them."""
    return (((user_id * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF) >> 32) % shards


# The only reads that may go to the replica (docs/database.md, "Which reads go where"). Everything else reads the
# primary: every cache fill (get_user fills "profile", list_friends "friends"...; a lagging replica would put the
# old value or a negative answer back in the cache for its whole TTL), every read that decides a write or a
# security answer (refresh, sessions, friend requests, file access), and login right after registration. What is
# left is display-only and tolerates bounded staleness (replica_max_lag_s): directory search, and a user's list of
# pending friend requests, which reads the primary for ``replica_max_lag_s`` after that user's own request write
# on this node (read-your-writes).
_REPLICA_READS = frozenset({"search_users", "get_users", "list_friend_requests"})


class MysqlUserStore(SqlUserStore):
    """Users and the social graph in MySQL, user-keyed tables sharded by user id (module docstring)."""

    _db: Mysql

    def __init__(self, config: MysqlStoreConfig, ctx: StrategyContext) -> None:
        self._db = Mysql(config, "users", ctx)
        self._d = MYSQL
        self._p = config.table_prefix
        self._shards = config.shards
        self._clock = ctx.clock
        self._max_lag_s = config.replica_max_lag_s
        self._wrote: dict[int, float] = {}  # user id -> monotonic time of that user's last request write here

    def _t(self, table: str, user_id: int) -> str:
        return f"`{self._p}{table}_{shard(user_id, self._shards):02d}`"

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

    def _joined(self, group_id: int, user_id: int) -> Iterable[Stmt]:
        yield Stmt(
            f"INSERT INTO {self._t('user_groups', user_id)} (user_id, group_id) VALUES (?, ?)"
            f"{self._d.insert_ignore('user_id')}",
            (user_id, group_id),
        )

    def _left(self, group_id: int, user_id: int) -> Iterable[Stmt]:
        yield Stmt(
            f"DELETE FROM {self._t('user_groups', user_id)} WHERE user_id = ? AND group_id = ?",
            (user_id, group_id),
        )

    async def start(self) -> None:
        await self._db.open(lambda: user_migrations(self._p, self._shards), self._shards)

    async def close(self) -> None:
        await self._db.close()

    async def create_user(self, user: User) -> None:
        def run() -> Tx[None]:
            yield Stmt(
                f"INSERT INTO {self._g('usernames')} (username, user_id) VALUES (?, ?)",
                (user.username, user.id),
            )
            yield Stmt(
                rows.insert(self._t("users", user.id), rows.USER_COLS),
                rows.values(user, rows.USER_COLS),
            )

        await self._db.tx(run)

    async def get_user_by_name(self, username: str) -> User | None:
        row = await self._db.one(
            f"SELECT user_id FROM {self._g('usernames')} WHERE username = ?", (username,)
        )
        return None if row is None else await self.get_user(int(row[0]))

    async def search_users(self, query: str, limit: int) -> list[User]:
        """Username prefix uses the global ``usernames`` index; display-name substrings visit every shard (one
        UNION ALL query), which is why search is a replica read."""
        prefix = like_escape(query.lower()) + "%"
        sub = "%" + like_escape(query) + "%"
        parts = [
            f"(SELECT {rows.USER_COLS} FROM `{self._p}users_{n:02d}` WHERE display_name LIKE ? LIMIT ?)"
            for n in range(self._shards)
        ]
        params: list[Any] = []
        for _ in range(self._shards):
            params += [sub, limit]
        by_name = await self._db.all(
            f"SELECT user_id FROM {self._g('usernames')} WHERE username LIKE ? ORDER BY username LIMIT ?",
            (prefix, limit),
            replica=self._replica("search_users"),
        )
        found = await self.get_users(int(r[0]) for r in by_name)
        for r in await self._db.all(" UNION ALL ".join(parts), params, replica=self._replica("search_users")):
            found.setdefault(r[0], rows.user(r))
        return sorted(found.values(), key=lambda u: u.username)[:limit]

    async def list_user_groups(self, user_id: int) -> list[Group]:
        found = await self._db.all(
            f"SELECT group_id FROM {self._t('user_groups', user_id)} WHERE user_id = ?", (user_id,)
        )
        out: list[Group] = []
        for chunk in chunks([r[0] for r in found], 500):
            groups = await self._db.all(
                f"{self._group_sql()} WHERE g.id IN ({placeholders(len(chunk))})", chunk
            )
            out += [rows.group(r) for r in groups]
        return sorted(out, key=lambda g: g.id)


if TYPE_CHECKING:  # mypy checks that the class meets the role it is registered for
    _meets: type[UserStore] = MysqlUserStore
