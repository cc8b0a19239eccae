"""The SQLite user store: the shared SQL (strategies/store/sql/users.py) on one database file, one table per
kind (no shards, so no separate username index or per-user group list)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.models import Group, User
from strategies.context import StrategyContext
from strategies.store.base import UserStore
from strategies.store.config import SqliteStoreConfig
from strategies.store.sql import rows
from strategies.store.sql.dialect import SQLITE, like_escape
from strategies.store.sql.users import SqlUserStore
from strategies.store.sqlite.db import Db, resolve
from strategies.store.sqlite.schema import USER_SCHEMA


class SqliteUserStore(SqlUserStore):
    _db: Db

    def __init__(self, config: SqliteStoreConfig, ctx: StrategyContext) -> None:
        self._db = Db(resolve(config.path, ctx), config)
        self._d = SQLITE

    async def start(self) -> None:
        await self._db.open(USER_SCHEMA)

    async def close(self) -> None:
        await self._db.close()

    async def create_user(self, user: User) -> None:
        await self._db.execute(
            rows.insert("users", rows.USER_COLS),
            rows.values(user, rows.USER_COLS),
        )

    async def get_user_by_name(self, username: str) -> User | None:
        row = await self._db.one(f"SELECT {rows.USER_COLS} FROM users WHERE username = ?", (username,))
        return rows.user(row) if row else None

    async def search_users(self, query: str, limit: int) -> list[User]:
        found = await self._db.all(
            f"SELECT {rows.USER_COLS} FROM users WHERE username LIKE ? ESCAPE '\\' "
            "OR display_name LIKE ? ESCAPE '\\' ORDER BY username LIMIT ?",
            (like_escape(query.lower()) + "%", "%" + like_escape(query) + "%", limit),
        )
        return [rows.user(r) for r in found]

    async def list_user_groups(self, user_id: int) -> list[Group]:
        found = await self._db.all(
            f"{self._group_sql()} JOIN members mm ON mm.group_id = g.id WHERE mm.user_id = ? ORDER BY g.id",
            (user_id,),
        )
        return [rows.group(r) for r in found]


if TYPE_CHECKING:  # mypy checks that the class meets the role it is registered for
    _meets: type[UserStore] = SqliteUserStore
