"""Connecting to and leaving Redis, the same way for every kind with a Redis backend (cache, dedup, bus,
presence): a connection that fails at start says which strategy could not reach which URL, and a close has a
deadline, so a Redis that stopped answering never holds a shutdown."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError


async def connect(url: str, timeout_s: float, who: str, **options: Any) -> aioredis.Redis:
    """A client whose first ping answered; ``RuntimeError`` naming ``who`` and ``url`` if it did not."""
    client = aioredis.Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, **options
    )
    try:
        await client.ping()
    except RedisError as exc:
        await client.aclose()
        raise RuntimeError(f"{who}: cannot reach Redis at {url}: {exc}") from exc
    return client


async def close(client: aioredis.Redis, timeout_s: float) -> None:
    """Close ``client`` within ``timeout_s``; a Redis that is gone or silent is given up on."""
    with contextlib.suppress(RedisError, OSError):  # OSError covers TimeoutError
        async with asyncio.timeout(timeout_s):
            await client.aclose()
