"""Private backend instances (for the backend-restart fault) start, serve, survive a restart, and stop."""

from __future__ import annotations

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
