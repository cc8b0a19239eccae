"""The user store's operations that are the same SQL on SQLite and MySQL (strategies/store/base.py's roles).

A backend subclasses :class:`SqlUserStore`, gives it a :class:`Database` and a :class:`Dialect`, and says where
tables live (``_t`` for user-keyed tables, which MySQL shards; ``_g`` for the others). It implements itself what its
schema does differently: creating a user and finding one by name or by search (MySQL keeps a global ``usernames``
index beside the sharded users), and listing a user's groups (MySQL keeps a per-user ``user_groups`` copy, kept by
``_joined`` / ``_left``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any

from core.models import FileMeta, Friend, FriendRequest, Group, Member, RefreshToken, Role, User
from strategies.store.sql import rows
from strategies.store.sql.dialect import Database, Dialect, Result, Stmt, Tx, chunks, placeholders


class SqlUserStore(ABC):
    """Users, login sessions, the social graph, groups and file metadata over one SQL database."""

    _db: Database
    _d: Dialect

    # ---------------------------------------------------------------- where rows live (overridden by MySQL)
    def _t(self, table: str, user_id: int) -> str:
        """The table holding ``user_id``'s rows of a user-keyed table (users, friends, blocks)."""
        return table

    def _g(self, table: str) -> str:
        return table

    def _replica(self, op: str, user_id: int | None = None) -> bool:
        """Whether the read ``op`` (for ``user_id``) may be served by a replica."""
        return False

    def _written(self, *user_ids: int) -> None:
        """These users' data changed on the primary just now (read-your-writes bookkeeping; none without a
        replica)."""
        return

    def _joined(self, group_id: int, user_id: int) -> Iterable[Stmt]:
        """Statements that go with a new membership row, in the same transaction."""
        return ()

    def _left(self, group_id: int, user_id: int) -> Iterable[Stmt]:
        """Statements that go with a removed membership row, in the same transaction."""
        return ()

    # ---------------------------------------------------------------- what the backend's schema decides
    @abstractmethod
    async def create_user(self, user: User) -> None:
        """Raises DuplicateError if the (lower-cased) username exists."""

    @abstractmethod
    async def get_user_by_name(self, username: str) -> User | None: ...

    @abstractmethod
    async def search_users(self, query: str, limit: int) -> list[User]: ...

    @abstractmethod
    async def list_user_groups(self, user_id: int) -> list[Group]: ...

    # ---------------------------------------------------------------- users
    def _update_row(
        self, table: str, sets: str, values: Sequence[Any], where: str, key: Sequence[Any]
    ) -> Tx[bool]:
        """Update the row at ``key`` if it exists; whether it does. Existence is read first (locked): MySQL's
        rowcount counts changed rows, so a row set to the value it had would read as absent."""
        found = yield Stmt(f"SELECT 1 FROM {table} WHERE {where}{self._d.for_update}", key)
        if not found.rows:
            return False
        yield Stmt(f"UPDATE {table} SET {sets} WHERE {where}", (*values, *key))
        return True

    def _user_sql(self, user_id: int) -> str:
        return f"SELECT {rows.USER_COLS} FROM {self._t('users', user_id)} WHERE id = ?"

    async def get_user(self, user_id: int) -> User | None:
        row = await self._db.one(self._user_sql(user_id), (user_id,))
        return rows.user(row) if row else None

    async def get_users(self, user_ids: Iterable[int]) -> dict[int, User]:
        by_table: dict[str, list[int]] = {}
        for uid in set(user_ids):
            by_table.setdefault(self._t("users", uid), []).append(uid)
        out: dict[int, User] = {}
        replica = self._replica("get_users")
        for table, ids in by_table.items():
            for chunk in chunks(ids, 500):
                found = await self._db.all(
                    f"SELECT {rows.USER_COLS} FROM {table} WHERE id IN ({placeholders(len(chunk))})",
                    chunk,
                    replica=replica,
                )
                out.update((r[0], rows.user(r)) for r in found)
        return out

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
            await self._db.execute(
                f"UPDATE {self._t('users', user_id)} SET {', '.join(sets)} WHERE id = ?", (*params, user_id)
            )
        return await self.get_user(user_id)

    # ---------------------------------------------------------------- login sessions and refresh tokens
    async def create_session(self, family: str, user_id: int, device: str | None, created_ms: int) -> None:
        await self._db.execute(
            f"INSERT INTO {self._g('sessions')} (family, user_id, device, created_ms) VALUES (?, ?, ?, ?)",
            (family, user_id, device, created_ms),
        )

    async def session_active(self, family: str) -> bool:
        row = await self._db.one(f"SELECT revoked FROM {self._g('sessions')} WHERE family = ?", (family,))
        return bool(row) and not row[0]

    async def session_user(self, family: str) -> int | None:
        row = await self._db.one(
            f"SELECT user_id, revoked FROM {self._g('sessions')} WHERE family = ?", (family,)
        )
        return int(row[0]) if row and not row[1] else None

    async def revoke_session(self, family: str) -> int | None:
        sessions = self._g("sessions")

        def run() -> Tx[int | None]:
            found = yield Stmt(
                f"SELECT user_id FROM {sessions} WHERE family = ?{self._d.for_update}", (family,)
            )
            if not found.rows:
                return None
            yield Stmt(f"UPDATE {sessions} SET revoked = 1 WHERE family = ?", (family,))
            yield Stmt(f"UPDATE {self._g('refresh_tokens')} SET used = 1 WHERE family = ?", (family,))
            return int(found.rows[0][0])

        return await self._db.tx(run)

    async def add_refresh_token(self, token: RefreshToken) -> None:
        await self._db.execute(
            f"INSERT INTO {self._g('refresh_tokens')} (token_hash, user_id, family, expires_ms, used, device) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (token.token_hash, token.user_id, token.family, token.expires_ms, int(token.used), token.device),
        )

    async def claim_refresh_token(
        self, token_hash: str, now_ms: int
    ) -> tuple[RefreshToken | None, bool, User | None]:
        tokens = self._g("refresh_tokens")

        def run() -> Tx[tuple[RefreshToken | None, bool, User | None]]:
            found = yield Stmt(
                f"SELECT {rows.CLAIM_COLS} FROM {tokens} t LEFT JOIN {self._g('sessions')} s "
                f"ON s.family = t.family WHERE t.token_hash = ?{self._d.for_update}",
                (token_hash,),
            )
            if not found.rows:
                return None, False, None
            tok = rows.claim(found.rows[0])
            owner: Result = yield Stmt(self._user_sql(tok.user_id), (tok.user_id,))
            user = rows.user(owner.rows[0]) if owner.rows else None
            if tok.used or tok.revoked or tok.expires_ms <= now_ms or user is None:
                return tok, False, user  # a refresh that fails does not spend the token
            yield Stmt(f"UPDATE {tokens} SET used = ? WHERE token_hash = ?", (max(1, now_ms), token_hash))
            return tok, True, user

        return await self._db.tx(run)

    # ---------------------------------------------------------------- friend requests
    async def add_friend_request(self, request: FriendRequest) -> None:
        self._written(request.from_user, request.to_user)
        await self._db.execute(
            rows.insert(self._g("friend_requests"), rows.REQUEST_COLS),
            rows.values(request, rows.REQUEST_COLS),
        )

    async def get_friend_request(self, request_id: int) -> FriendRequest | None:
        row = await self._db.one(
            f"SELECT {rows.REQUEST_COLS} FROM {self._g('friend_requests')} WHERE id = ?", (request_id,)
        )
        return rows.request(row) if row else None

    async def pending_request(self, from_user: int, to_user: int) -> FriendRequest | None:
        row = await self._db.one(
            f"SELECT {rows.REQUEST_COLS} FROM {self._g('friend_requests')} "
            "WHERE from_user = ? AND status = 'pending' AND to_user = ? ORDER BY id DESC LIMIT 1",
            (from_user, to_user),
        )
        return rows.request(row) if row else None

    async def list_friend_requests(self, user_id: int) -> list[FriendRequest]:
        # a UNION, not OR: each side is one range of its own index (requests to, requests from)
        table = self._g("friend_requests")
        found = await self._db.all(
            f"SELECT {rows.REQUEST_COLS} FROM {table} WHERE to_user = ? AND status = 'pending' "
            f"UNION SELECT {rows.REQUEST_COLS} FROM {table} WHERE from_user = ? AND status = 'pending' "
            "ORDER BY id DESC LIMIT 500",
            (user_id, user_id),
            replica=self._replica("list_friend_requests", user_id),
        )
        return [rows.request(r) for r in found]

    async def set_friend_request_status(self, request_id: int, status: str) -> None:
        table = self._g("friend_requests")

        def run() -> Tx[Any]:
            found = yield Stmt(
                f"SELECT from_user, to_user FROM {table} WHERE id = ?{self._d.for_update}", (request_id,)
            )
            yield Stmt(f"UPDATE {table} SET status = ? WHERE id = ?", (status, request_id))
            return found.rows[0] if found.rows else None

        users = await self._db.tx(run)
        if users is not None:
            self._written(int(users[0]), int(users[1]))

    # ---------------------------------------------------------------- friends and blocks
    async def add_friendship(self, a: int, b: int, since_ms: int) -> None:
        def run() -> Tx[None]:
            for x, y in ((a, b), (b, a)):
                yield Stmt(
                    f"INSERT INTO {self._t('friends', x)} (user_id, friend_id, since_ms) VALUES (?, ?, ?)"
                    f"{self._d.insert_ignore('user_id')}",
                    (x, y, since_ms),
                )

        await self._db.tx(run)

    async def remove_friendship(self, a: int, b: int) -> bool:
        def run() -> Tx[bool]:
            n = 0
            for x, y in ((a, b), (b, a)):
                done = yield Stmt(
                    f"DELETE FROM {self._t('friends', x)} WHERE user_id = ? AND friend_id = ?", (x, y)
                )
                n += done.rowcount
            return n > 0

        return await self._db.tx(run)

    async def list_friends(self, user_id: int) -> list[Friend]:
        found = await self._db.all(
            f"SELECT friend_id, remark, since_ms FROM {self._t('friends', user_id)} WHERE user_id = ? "
            "ORDER BY since_ms",
            (user_id,),
        )
        return [Friend(r[0], r[1], r[2]) for r in found]

    async def are_friends(self, a: int, b: int) -> bool:
        row = await self._db.one(
            f"SELECT 1 FROM {self._t('friends', a)} WHERE user_id = ? AND friend_id = ?", (a, b)
        )
        return row is not None

    async def set_remark(self, user_id: int, friend_id: int, remark: str) -> bool:
        return await self._db.tx(
            lambda: self._update_row(
                self._t("friends", user_id),
                "remark = ?",
                (remark,),
                "user_id = ? AND friend_id = ?",
                (user_id, friend_id),
            )
        )

    async def block(self, user_id: int, target: int, at_ms: int) -> None:
        await self._db.execute(
            f"INSERT INTO {self._t('blocks', user_id)} (user_id, target, at_ms) VALUES (?, ?, ?)"
            f"{self._d.insert_ignore('user_id')}",
            (user_id, target, at_ms),
        )

    async def unblock(self, user_id: int, target: int) -> bool:
        n = await self._db.execute(
            f"DELETE FROM {self._t('blocks', user_id)} WHERE user_id = ? AND target = ?", (user_id, target)
        )
        return n > 0

    async def list_blocked(self, user_id: int) -> list[int]:
        found = await self._db.all(
            f"SELECT target FROM {self._t('blocks', user_id)} WHERE user_id = ? ORDER BY at_ms", (user_id,)
        )
        return [r[0] for r in found]

    async def is_blocked(self, blocker: int, target: int) -> bool:
        row = await self._db.one(
            f"SELECT 1 FROM {self._t('blocks', blocker)} WHERE user_id = ? AND target = ?", (blocker, target)
        )
        return row is not None

    # ---------------------------------------------------------------- groups
    def _group_sql(self) -> str:
        """Groups with their member count; the caller adds the WHERE (``g`` is the group)."""
        return (
            "SELECT g.id, g.name, g.owner, g.created_ms, g.dissolved, "
            f"(SELECT COUNT(*) FROM {self._g('members')} m WHERE m.group_id = g.id) FROM {self._g('chat_groups')} g"
        )

    def _add_members(self, group_id: int, members: Sequence[Member]) -> Tx[list[int]]:
        added: list[int] = []
        for m in members:
            done = yield Stmt(
                f"INSERT INTO {self._g('members')} (group_id, {rows.MEMBER_COLS}) VALUES (?, ?, ?, ?, ?)"
                f"{self._d.insert_ignore('group_id')}",
                (group_id, m.user_id, m.role.value, m.joined_ms, m.joined_seq),
            )
            if done.rowcount > 0:
                added.append(m.user_id)
                yield from self._joined(group_id, m.user_id)
        return added

    async def create_group(self, group: Group, members: Sequence[Member]) -> None:
        def run() -> Tx[None]:
            yield Stmt(
                f"INSERT INTO {self._g('chat_groups')} (id, name, owner, created_ms, dissolved) VALUES (?, ?, ?, ?, 0)",
                (group.id, group.name, group.owner, group.created_ms),
            )
            yield from self._add_members(group.id, members)

        await self._db.tx(run)

    async def get_group(self, group_id: int) -> Group | None:
        row = await self._db.one(f"{self._group_sql()} WHERE g.id = ?", (group_id,))
        return rows.group(row) if row else None

    async def rename_group(self, group_id: int, name: str) -> None:
        await self._db.execute(f"UPDATE {self._g('chat_groups')} SET name = ? WHERE id = ?", (name, group_id))

    async def dissolve_group(self, group_id: int) -> None:
        await self._db.execute(f"UPDATE {self._g('chat_groups')} SET dissolved = 1 WHERE id = ?", (group_id,))

    async def add_members(self, group_id: int, members: Sequence[Member]) -> list[int]:
        return await self._db.tx(lambda: self._add_members(group_id, members))

    async def remove_member(self, group_id: int, user_id: int) -> bool:
        def run() -> Tx[bool]:
            done = yield Stmt(
                f"DELETE FROM {self._g('members')} WHERE group_id = ? AND user_id = ?", (group_id, user_id)
            )
            yield from self._left(group_id, user_id)
            return done.rowcount > 0

        return await self._db.tx(run)

    async def set_role(self, group_id: int, user_id: int, role: Role) -> bool:
        return await self._db.tx(
            lambda: self._update_row(
                self._g("members"),
                "role = ?",
                (role.value,),
                "group_id = ? AND user_id = ?",
                (group_id, user_id),
            )
        )

    async def get_members(self, group_id: int) -> list[Member]:
        found = await self._db.all(
            f"SELECT {rows.MEMBER_COLS} FROM {self._g('members')} WHERE group_id = ? ORDER BY joined_ms, user_id",
            (group_id,),
        )
        return [rows.member(r) for r in found]

    async def get_member(self, group_id: int, user_id: int) -> Member | None:
        row = await self._db.one(
            f"SELECT {rows.MEMBER_COLS} FROM {self._g('members')} WHERE group_id = ? AND user_id = ?",
            (group_id, user_id),
        )
        return rows.member(row) if row else None

    # ---------------------------------------------------------------- files
    async def add_file(self, meta: FileMeta) -> None:
        await self._db.execute(
            rows.insert(self._g("files"), rows.FILE_COLS),
            rows.values(meta, rows.FILE_COLS),
        )

    async def get_file(self, file_id: int) -> FileMeta | None:
        row = await self._db.one(f"SELECT {rows.FILE_COLS} FROM {self._g('files')} WHERE id = ?", (file_id,))
        return rows.file(row) if row else None

    async def add_file_ref(self, file_id: int, conv: str) -> None:
        await self._db.execute(
            f"INSERT INTO {self._g('file_refs')} (file_id, conv) VALUES (?, ?){self._d.insert_ignore('conv')}",
            (file_id, conv),
        )

    async def file_convs(self, file_id: int) -> list[str]:
        found = await self._db.all(f"SELECT conv FROM {self._g('file_refs')} WHERE file_id = ?", (file_id,))
        return [r[0] for r in found]
