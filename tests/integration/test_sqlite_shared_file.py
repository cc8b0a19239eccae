"""Several nodes may share one SQLite file (a local cluster): sequence numbers must still never repeat."""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from core.clock import SystemClock
from core.metrics import Metrics
from core.models import MessageDraft, MessageKind
from strategies.context import StrategyContext
from strategies.store.config import SqliteStoreConfig
from strategies.store.sqlite.db import SqliteThread
from strategies.store.sqlite.messages import SqliteMessageStore


async def test_two_writers_on_one_file_allocate_disjoint_contiguous_seqs(tmp_path: Path) -> None:
    cfg = SqliteStoreConfig(path=str(tmp_path / "shared.db"))
    stores = [
        SqliteMessageStore(cfg, StrategyContext(SystemClock(), Metrics(), tmp_path, f"n{i}"))
        for i in range(2)
    ]
    for s in stores:
        await s.start()
    ids = itertools.count(1)

    async def writer(store: SqliteMessageStore, w: int) -> list[int]:
        seqs = []
        for i in range(150):
            d = MessageDraft(
                next(ids), "g:7", w, f"dev{w}", f"{w}-{i}", MessageKind.TEXT, {"text": "x"}, 0, f"{w}:{i}"
            )
            seqs.append((await store.append(d)).message.seq)
        return seqs

    try:
        results = await asyncio.gather(*(writer(stores[w % 2], w) for w in range(6)))
        all_seqs = sorted(s for r in results for s in r)
        assert all_seqs == list(range(1, 901))
        for r in results:
            assert r == sorted(r)  # one writer's messages keep their order
        # a resend through the other store is recognised as the same message
        again = await stores[1].append(
            MessageDraft(next(ids), "g:7", 0, "dev0", "0-0", MessageKind.TEXT, {"text": "x"}, 0, "0:0")
        )
        assert not again.created and again.message.seq == results[0][0]
        heads = await stores[0].heads(["g:7"])
        assert heads["g:7"].last_seq == 900
    finally:
        for s in stores:
            await s.close()


class _LockedTwice:
    """A connection whose journal-mode switch is refused twice, as when nodes start together on one file."""

    def __init__(self) -> None:
        self.refusals = 2
        self.mode = "delete"

    def execute(self, sql: str) -> _LockedTwice:
        if sql == "PRAGMA journal_mode = WAL":
            if self.refusals:
                self.refusals -= 1
                raise sqlite3.OperationalError("database is locked")
            self.mode = "wal"
        return self

    def fetchone(self) -> tuple[str]:
        return (self.mode,)


def test_wal_switch_retries_while_another_process_holds_the_file(tmp_path: Path) -> None:
    thread = SqliteThread(tmp_path / "x.db", SqliteStoreConfig(busy_timeout_ms=2000), "t")
    conn = _LockedTwice()
    thread._enable_wal(conn)  # type: ignore[arg-type]
    assert conn.mode == "wal" and conn.refusals == 0


def test_wal_switch_gives_up_after_the_busy_timeout(tmp_path: Path) -> None:
    thread = SqliteThread(tmp_path / "x.db", SqliteStoreConfig(busy_timeout_ms=50), "t")
    conn = _LockedTwice()
    conn.refusals = 10**6
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        thread._enable_wal(conn)  # type: ignore[arg-type]


def _open_store(path: str) -> str:
    async def go() -> None:
        store = SqliteMessageStore(
            SqliteStoreConfig(path=path), StrategyContext(SystemClock(), Metrics(), Path(path).parent, "n")
        )
        await store.start()
        await store.close()

    try:
        asyncio.run(go())
    except Exception as exc:  # reported to the parent, which asserts on it
        return repr(exc)
    return "ok"


def test_nodes_starting_together_on_a_fresh_file_all_open_it(tmp_path: Path) -> None:
    """CI once saw node-3 of a local cluster die with "database is locked" at start-up."""
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(6) as pool:
        for round_ in range(8):
            path = str(tmp_path / f"fresh{round_}.db")
            assert pool.map(_open_store, [path] * 6) == ["ok"] * 6
