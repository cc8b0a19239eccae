"""Private backend instances (for the backend-restart fault) start, serve, survive a restart, and stop."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from experiments.faults.backends import make_backend


async def _ping(kind: str, url: str) -> None:
    if kind == "redis":
        import redis.asyncio as aioredis

        client = aioredis.from_url(url)
        try:
            assert await client.ping()
        finally:
            await client.aclose()
    elif kind == "mariadb":
        import aiomysql

        port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
        conn = await aiomysql.connect(host="127.0.0.1", port=port, user="root", db="wsim")
        try:
            async with conn.cursor() as cur:
                await cur.execute("SELECT 1")
                assert (await cur.fetchone()) == (1,)
        finally:
            conn.close()
    elif kind == "mongo":
        from pymongo import AsyncMongoClient

        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(url, serverSelectionTimeoutMS=5000)
        try:
            await client.admin.command("ping")
        finally:
            await client.close()
    else:
        import aio_pika

        conn = await aio_pika.connect(url)
        await conn.close()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["redis", "mariadb", "rabbitmq", "mongo"])
async def test_private_backend_restart(kind: str, tmp_path: Path) -> None:
    backend = make_backend(kind, tmp_path / kind)
    await backend.start()
    try:
        await _ping(kind, backend.url)
        await backend.stop()
        await backend.start()
        await _ping(kind, backend.url)
    finally:
        await backend.stop()


def test_unknown_backend_kind(tmp_path: Path) -> None:
    from experiments.faults.backends import BackendError

    with pytest.raises(BackendError, match="known: redis, mariadb, rabbitmq, mongo"):
        make_backend("oracle", tmp_path)


async def _query(url: str, sql: str) -> list[tuple[object, ...]]:
    import aiomysql

    port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
    user = url.split("//", 1)[1].split("@", 1)[0]
    conn = await aiomysql.connect(host="127.0.0.1", port=port, user=user, db="wsim", autocommit=True)
    try:
        async with conn.cursor() as cur:
            await cur.execute(sql)
            return list(await cur.fetchall())
    finally:
        conn.close()


async def _replicated(url: str, n: int, timeout_s: float = 30.0) -> None:
    import asyncio
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(Exception):  # the table itself may not have arrived yet
            if (await _query(url, "SELECT COUNT(*) FROM t"))[0][0] == n:
                return
        assert time.monotonic() < deadline, f"the replica did not reach {n} rows in {timeout_s} s"
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_private_mariadb_replica_follows_the_primary_through_its_crash(tmp_path: Path) -> None:
    """backends.mariadb.replica: a second mariadbd replicates the primary, refuses writes, and a replica killed
    mid-run resumes from its position after the restart (what read_split.yaml's replica crash relies on)."""
    from experiments.faults.backends import BackendError, PrivateBackendConfig

    backend = make_backend("mariadb", tmp_path / "m", PrivateBackendConfig(replica=True))
    await backend.start()
    try:
        assert backend.parts == ("primary", "replica")
        replica_url = backend.placeholders()["replica_url"]
        assert replica_url != backend.url and set(backend.pids()) == {"primary", "replica"}
        await _query(backend.url, "CREATE TABLE t (id INT PRIMARY KEY)")
        await _query(backend.url, "INSERT INTO t VALUES (1), (2)")
        await _replicated(replica_url, 2)
        with pytest.raises(Exception, match="read-only"):
            await _query(replica_url, "INSERT INTO t VALUES (3)")
        await backend.stop_part("replica")
        assert set(backend.pids()) == {"primary"}
        await _query(backend.url, "INSERT INTO t VALUES (3), (4), (5)")  # written while the replica is down
        await backend.start_part("replica")
        await _replicated(replica_url, 5)
        with pytest.raises(BackendError, match="no part"):
            await backend.stop_part("arbiter")
    finally:
        await backend.stop()


def test_only_mariadb_has_a_replica(tmp_path: Path) -> None:
    from experiments.faults.backends import BackendError, PrivateBackendConfig

    with pytest.raises(BackendError, match="only mariadb"):
        make_backend("redis", tmp_path, PrivateBackendConfig(replica=True))
    assert make_backend("redis", tmp_path).parts == ("primary",)
