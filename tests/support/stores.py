"""Build every registered store backend against a real server, in a namespace of its own, for the contract suites.

* sqlite: a file in the test's tmp directory.
* mysql: a fresh ``wsim_<ns>`` database on the shared MariaDB, dropped afterwards.
* mongo: ``nx-27017`` (a MongoDB wire-protocol server) started once per test session on a free port, with a fresh
  database per test. The code targets real MongoDB; gaps of the stand-in are listed in docs/database.md.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.clock import Clock, SystemClock
from core.metrics import Metrics
from strategies.context import StrategyContext
from tests.support.processes import free_port, stop_process
from tests.support.services import namespace, require_service, unavailable

MARIADB_DSN = "mysql://root@127.0.0.1:3306/{db}"


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Readiness: the port accepts a connection (polled, no fixed sleep); fail at once if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            time.sleep(0.02)
            continue
        return
    raise RuntimeError(f"nothing listening on {port} after {timeout} s")


@contextlib.contextmanager
def nx_27017(data_dir: Path) -> Iterator[str]:
    """Start the MongoDB stand-in; yields its URI."""
    exe = shutil.which("nx-27017") or str(Path(sys.executable).with_name("nx-27017"))
    if not Path(exe).exists():
        unavailable("nx-27017 is not installed (pip install -e '.[test]')")
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = (data_dir / "nx.log").open("wb")
    proc = subprocess.Popen(
        [
            exe,
            "--data-dir",
            str(data_dir / "db"),
            "--host",
            "127.0.0.1",
            "-p",
            str(port),
            "--log-file",
            str(data_dir / "nx-daemon.log"),
            "--pid-file",
            str(data_dir / "nx.pid"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_port(port, proc)
        yield f"mongodb://127.0.0.1:{port}/?directConnection=true"
    finally:
        stop_process(proc)
        log.close()


def context(tmp_path: Path, clock: Clock | None = None) -> StrategyContext:
    return StrategyContext(
        clock=clock or SystemClock(), metrics=Metrics(), data_dir=tmp_path, node_name="test"
    )


async def drop_mysql_database(db: str) -> None:
    import aiomysql

    conn = await aiomysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
    try:
        async with conn.cursor() as cur:
            await cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
    finally:
        conn.close()


async def drop_mongo_database(uri: str, db: str) -> None:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        await client.drop_database(db)
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def backend_config(
    kind: str, tmp_path: Path, mongo_uri: str | None, **extra: Any
) -> AsyncIterator[dict[str, Any]]:
    """A store config dict for ``kind`` in a fresh namespace; the namespace is removed afterwards."""
    if kind == "sqlite":
        yield {"kind": "sqlite", "path": str(tmp_path / f"{namespace('s')}.db"), **extra}
    elif kind == "mysql":
        require_service("mariadb")
        db = namespace("wsim")
        try:
            yield {"kind": "mysql", "dsn": MARIADB_DSN.format(db=db), "shards": 4, **extra}
        finally:
            await drop_mysql_database(db)
    elif kind == "mongo":
        assert mongo_uri is not None
        db = namespace("wsim")
        try:
            yield {"kind": "mongo", "uri": mongo_uri, "database": db, "write_concern": "majority", **extra}
        finally:
            await drop_mongo_database(mongo_uri, db)
    else:  # pragma: no cover - a new backend must be added here to be tested
        raise AssertionError(f"no test backend for store kind {kind!r}: add it to tests/support/stores.py")


@contextlib.asynccontextmanager
async def param_backend_config(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str | None = None
) -> AsyncIterator[dict[str, Any]]:
    """:func:`backend_config` for ``kind`` (by default the kind a fixture is parametrized with), starting the
    session's MongoDB stand-in only when the kind needs it."""
    kind = kind or request.param
    uri = request.getfixturevalue("mongo_uri") if kind == "mongo" else None
    async with backend_config(kind, tmp_path, uri) as cfg:
        yield cfg
