"""What differs between SQLite and MySQL in the statements the stores share, and the transaction protocol.

A transaction is a generator (:data:`Tx`): it yields :class:`Stmt` and is sent back each statement's
:class:`Result`, so its logic (read, decide, write) is written once and run by either driver: SQLite's in its
writer thread inside ``BEGIN IMMEDIATE`` (one thread hop for the whole transaction), MySQL's on a pooled connection
with retries. A driver that retries calls the transaction's factory again: a generator runs once.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeVar

T = TypeVar("T")


class Stmt(NamedTuple):
    sql: str
    params: Sequence[Any] = ()
    many: bool = False  # params is a sequence of rows (executemany)


class Result(NamedTuple):
    rows: list[Any]  # empty for a statement that returns none
    rowcount: int  # rows written (changed, for MySQL's UPDATE) by the statement


Tx = Generator[Stmt, Result, T]
TxFactory = Callable[[], Tx[T]]


@dataclass(frozen=True)
class Dialect:
    """How one backend spells what the shared statements need (placeholders are always ``?``: see
    :class:`Database`)."""

    name: str  # the ``store`` label of the store metrics
    # appended to a read inside a transaction that then writes what it read
    for_update: str = ""
    # the two-argument maximum
    greatest: str = "MAX"
    # an upsert's conflict clause (``{key}``: the key columns), followed by assignments; ``new(col)`` is the value
    # the row was to be inserted with
    upsert: str = " ON CONFLICT({key}) DO UPDATE SET "
    new_value: str = "excluded.{col}"
    # an insert that skips a row whose key exists (``{key}``: one key column)
    ignore: str = " ON CONFLICT DO NOTHING"

    def new(self, col: str) -> str:
        return self.new_value.format(col=col)

    def on_conflict(self, key: str) -> str:
        return self.upsert.format(key=key)

    def insert_ignore(self, key: str) -> str:
        return self.ignore.format(key=key)


SQLITE = Dialect("sqlite")
# MySQL has no ON CONFLICT: a no-op update of the key column skips the row (rowcount 0 for it, CLIENT.FOUND_ROWS
# being off), and VALUES(col) is the row that was to be inserted.
MYSQL = Dialect(
    "mysql",
    for_update=" FOR UPDATE",
    greatest="GREATEST",
    upsert=" ON DUPLICATE KEY UPDATE ",
    new_value="VALUES({col})",
    ignore=" ON DUPLICATE KEY UPDATE {key} = {key}",
)


def placeholders(n: int) -> str:
    return ",".join("?" * n)


def chunks(items: Sequence[T], size: int) -> Generator[Sequence[T], None, None]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def like_escape(s: str) -> str:
    """``s`` as a literal inside a LIKE pattern with ``ESCAPE '\\'``."""
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Database(Protocol):
    """What the shared SQL needs from a backend's connection(s). Statements use ``?`` placeholders whatever the
    driver's own style (MySQL's driver rewrites them, once per statement text). Errors are the store contract's
    (StoreUnavailable, DuplicateError)."""

    async def all(self, sql: str, params: Sequence[Any] = (), *, replica: bool = False) -> list[Any]:
        """Rows of a read. ``replica``: the read tolerates bounded staleness (a backend without replicas ignores
        it)."""
        ...

    async def one(self, sql: str, params: Sequence[Any] = (), *, replica: bool = False) -> Any: ...

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One write in its own transaction; returns its rowcount."""
        ...

    async def tx(self, factory: TxFactory[T]) -> T:
        """Run the transaction ``factory()`` on the primary and commit it."""
        ...
