"""Column lists and row -> model mappers of the tables both SQL backends share. Both drivers give Python ints for
integer columns (sqlite3, and PyMySQL for BIGINT/INT/TINYINT and COUNT), so the mappers convert only what the
database cannot type: enums, JSON and flags."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson

from core.models import FileMeta, FriendRequest, Group, Member, Message, MessageKind, RefreshToken, Role, User

USER_COLS = "id, username, display_name, password_hash, bio, avatar_file, created_ms"
FILE_COLS = "id, owner, name, size, mime, storage_key, created_ms, width, height, thumb_key"
REQUEST_COLS = "id, from_user, to_user, message, status, created_ms"
MEMBER_COLS = "user_id, role, joined_ms, joined_seq"
MESSAGE_COLS = "id, conv, seq, sender, device, cmid, kind, body, ts, recalled"
DEAD_LETTER_COLS = "id, msg_id, conv, seq, user_id, device, attempts, reason, created_ms"
# a refresh token joined with its session (``t``, ``s``): the token's columns, then whether the session is revoked
CLAIM_COLS = "t.token_hash, t.user_id, t.family, t.expires_ms, t.used, t.device, s.revoked"


@lru_cache(maxsize=64)
def _names(cols: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in cols.split(","))


def values(obj: object, cols: str) -> tuple[Any, ...]:
    """``obj``'s fields in the order of the column list ``cols``: the models name their fields as the columns."""
    return tuple(getattr(obj, name) for name in _names(cols))


def insert(table: str, cols: str) -> str:
    """``INSERT INTO table (cols) VALUES (?, ...)``: one placeholder a column."""
    return f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' * len(_names(cols)))})"


def user(row: Any) -> User:
    return User(row[0], row[1], row[2], row[3], row[6], row[4], row[5])


def group(row: Any) -> Group:
    return Group(row[0], row[1], row[2], row[3], bool(row[4]), row[5])


def member(row: Any) -> Member:
    return Member(row[0], Role(row[1]), row[2], row[3])


def request(row: Any) -> FriendRequest:
    return FriendRequest(row[0], row[1], row[2], row[3], row[4], row[5])


def file(row: Any) -> FileMeta:
    return FileMeta(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9])


def claim(row: Any) -> RefreshToken:
    # `used` holds the wall ms of the first exchange (1 for tokens marked by a logout)
    return RefreshToken(row[0], row[1], row[2], row[3], bool(row[4]), bool(row[6]), row[5], int(row[4]))


def message(row: Any) -> Message:
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


def message_row(m: Message) -> tuple[Any, ...]:
    """A stored copy's insert row (tiering), in ``IMPORT_COLS`` order."""
    return (
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


IMPORT_COLS = "conv, seq, id, sender, device, cmid, kind, body, ts, recalled"
