from __future__ import annotations

import logging

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from strategies import _redis
from strategies.context import StrategyContext
from strategies.dedup.base import DedupRecord
from strategies.dedup.config import RedisDedupConfig
from strategies.dedup.memory import dedup_key

log = logging.getLogger(__name__)


class RedisDeduplicator:
    """The 5-minute window in Redis, shared by every node: a resend that reaches another node (after a reconnect
    or a failover) is answered from the window too, without a store round trip or a new sequence number.

    ``remember`` is ``SET key record NX PX window``: the first record of a key wins and expires after the window.
    Redis is an accelerator, never the guarantee: when it is unreachable (or restarted, which empties it),
    ``lookup`` answers "unknown" and ``remember`` is skipped, and the store's unique dedup index still stores each
    message once and answers the resend with the original. Nothing is lost and no sequence number repeats; a
    resend only costs a store round trip.
    """

    def __init__(self, config: RedisDedupConfig, ctx: StrategyContext) -> None:
        self._cfg = config
        self._metrics = ctx.metrics
        self._window_ms = int(config.window_s * 1000)
        self._redis: aioredis.Redis | None = None
        self.errors = 0

    def durable_key(self, sender: int, device: str, cmid: str) -> str | None:
        return dedup_key(sender, device, cmid)

    def _key(self, key: str) -> str:
        return f"{self._cfg.prefix}dedup:{key}"

    async def lookup(self, key: str) -> DedupRecord | None:
        if self._redis is None:
            return None
        try:
            raw = await self._redis.get(self._key(key))
        except RedisError as exc:
            self.errors += 1
            log.debug("dedup lookup failed (the store's unique index still applies): %r", exc)
            return None
        if raw is None:
            return None
        m, conv, seq, ts, fp = orjson.loads(raw)
        return DedupRecord(int(m), conv, int(seq), int(ts), fp)

    async def remember(self, key: str, record: DedupRecord) -> None:
        if self._redis is None:
            return
        value = orjson.dumps([record.msg_id, record.conv, record.seq, record.ts_ms, record.fingerprint])
        try:
            await self._redis.set(self._key(key), value, nx=True, px=self._window_ms)
        except RedisError as exc:
            self.errors += 1
            log.debug("dedup remember failed (the store's unique index still applies): %r", exc)

    async def start(self) -> None:
        self._redis = await _redis.connect(self._cfg.url, self._cfg.socket_timeout_s, "dedup redis")

    async def close(self) -> None:
        if self._redis is not None:
            await _redis.close(self._redis, self._cfg.socket_timeout_s)
            self._redis = None
