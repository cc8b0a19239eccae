"""A MySQL read replica for tests, made of parts whose lag and failures the test controls.

* :class:`StandInReplica`: a second database on the shared MariaDB that holds a snapshot of the primary's tables,
  refreshed only when the test calls :meth:`StandInReplica.catch_up` (replication lag, frozen until the test says
  "the replica catches up"). It is read through a SELECT-only account, so a write routed to it would fail.
* :class:`SwitchProxy`: a loopback TCP proxy in front of it that forwards, hangs (accepts and forwards nothing,
  in either direction, on old and new connections) or refuses (its port is closed), switched by the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Literal

import aiomysql

from tests.support.services import namespace, require_service
from tests.support.stores import drop_mysql_database


@contextlib.asynccontextmanager
async def _root_cursor() -> AsyncIterator[aiomysql.Cursor]:
    """MariaDB's root account, for what the replica's SELECT-only account may not do."""
    conn = await aiomysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
    try:
        async with conn.cursor() as cur:
            yield cur
    finally:
        conn.close()


class StandInReplica:
    """``async with StandInReplica(primary_db)``: created on entry, dropped (database and account) on exit."""

    def __init__(self, primary_db: str) -> None:
        self.primary_db = primary_db
        self.db = f"{primary_db}_r"
        self.user = namespace("ro")[:32]
        self.password = secrets.token_hex(8)

    async def __aenter__(self) -> StandInReplica:
        require_service("mariadb")
        await self.create()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.drop()

    async def create(self) -> None:
        async with _root_cursor() as cur:
            await cur.execute(f"CREATE DATABASE IF NOT EXISTS `{self.db}` CHARACTER SET utf8mb4")
            await cur.execute(f"CREATE USER '{self.user}'@'127.0.0.1' IDENTIFIED BY '{self.password}'")
            await cur.execute(f"GRANT SELECT ON `{self.db}`.* TO '{self.user}'@'127.0.0.1'")

    async def drop(self) -> None:
        async with _root_cursor() as cur:
            await cur.execute(f"DROP USER IF EXISTS '{self.user}'@'127.0.0.1'")
        await drop_mysql_database(self.db)

    def dsn(self, port: int = 3306) -> str:
        return f"mysql://{self.user}:{self.password}@127.0.0.1:{port}/{self.db}"

    async def catch_up(self) -> None:
        """Copy every table of the primary (replication catching up at once)."""
        async with _root_cursor() as cur:
            await cur.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (self.primary_db,),
            )
            tables = [r[0] for r in await cur.fetchall()]
            await cur.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (self.db,)
            )
            present = {r[0] for r in await cur.fetchall()}
            for t in tables:
                src, dst = f"`{self.primary_db}`.`{t}`", f"`{self.db}`.`{t}`"
                if t not in present:
                    await cur.execute(f"CREATE TABLE {dst} LIKE {src}")
                await cur.execute("START TRANSACTION")
                await cur.execute(f"DELETE FROM {dst}")
                await cur.execute(f"INSERT INTO {dst} SELECT * FROM {src}")
                await cur.execute("COMMIT")


Mode = Literal["forward", "hang", "refuse"]


class SwitchProxy:
    """127.0.0.1:<port> -> target, in one of three modes the test switches at will; listening inside
    ``async with``."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.mode: Mode = "forward"
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.accepted = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def set_mode(self, mode: Mode) -> None:
        self.mode = mode
        if mode == "hang":
            self._flowing.clear()
        else:
            self._flowing.set()
        if mode == "refuse":
            await self._stop_listening()
            for w in list(self._writers):
                w.transport.abort()
        elif self._server is None:
            await self.start()

    async def _stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()
            await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    async def _accept(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.add(w)
        try:
            await self._flowing.wait()  # hang: a new connection gets no handshake
            ur, uw = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            w.transport.abort()
            self._writers.discard(w)
            return
        self._writers.add(uw)
        await asyncio.gather(self._pump(r, uw), self._pump(ur, w), return_exceptions=True)
        for x in (w, uw):
            x.transport.abort()
            self._writers.discard(x)

    async def _pump(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while data := await r.read(65536):
            await self._flowing.wait()  # hang: nothing moves on an open connection either
            w.write(data)
            await w.drain()
        w.transport.abort()

    async def __aenter__(self) -> SwitchProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._flowing.set()
        await self._stop_listening()
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()
