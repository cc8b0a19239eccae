"""L2: a cache in Redis shared by every node (TTL 30 min by default).

Consistency. Writers update the store, then delete the key here. Two things could still leave a stale value:

* A reader that missed, loaded the old value from the store and fills after the writer's delete. Every miss takes a
  *lease* (a token stored next to the key, ``lease_ms`` long); a delete removes the lease with the key, and a
  fill is applied only while the reader's lease is still there (one Lua script, atomic in Redis). So a fill never
  resurrects an invalidated value. This is the lease scheme of Facebook's memcache paper (NSDI 2013).
* A delete that fails because Redis is unreachable. It is kept and retried before the next operation; values can
  be stale only while Redis is unreachable and until the first successful call after it (Redis restarted without
  persistence has no value to be stale).

While Redis is down every read is a miss (counted) and goes to the store: the cache never fails a request.
Evictions under ``maxmemory`` are Redis's own (server-wide ``evicted_keys`` in INFO), not counted per name here.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import orjson
import redis.asyncio as aioredis
from cachetools import LRUCache
from redis.exceptions import RedisError

from strategies import _redis
from strategies.cache.base import MISS
from strategies.cache.config import L2CacheConfig
from strategies.context import StrategyContext

log = logging.getLogger(__name__)

# KEYS: value, lease. ARGV: lease token, lease ms. Returns {1, value} on a hit, {0} on a miss (lease taken).
_GET_OR_LEASE = """
local v = redis.call('GET', KEYS[1])
if v then return {1, v} end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return {0}
"""
# KEYS: value, lease. ARGV: lease token, value, ttl ms. Fills only while the lease is ours.
_FILL = """
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
"""


class RedisCache:
    """Shared L2 cache (module docstring for the consistency argument)."""

    def __init__(self, config: L2CacheConfig, ctx: StrategyContext, tier: str = "l2") -> None:
        self._cfg = config
        self._metrics = ctx.metrics
        self._tier = tier
        self._ttl_ms = int(config.ttl_s * 1000)
        self.redis: aioredis.Redis | None = None
        self._leases: LRUCache[tuple[str, str], bytes] = LRUCache(maxsize=100_000)
        self._pending_deletes: set[tuple[str, str]] = set()
        self._sampled = 0
        self._get_script: Any = None
        self._fill_script: Any = None

    # keys share a hash tag so the value and its lease live in one Redis Cluster slot
    def _key(self, name: str, key: str) -> str:
        return f"{self._cfg.prefix}c:{{{name}:{key}}}"

    def _lease(self, name: str, key: str) -> str:
        return f"{self._cfg.prefix}l:{{{name}:{key}}}"

    def _hot(self, name: str) -> str:
        return f"{self._cfg.prefix}hot:{name}"

    @property
    def prefix(self) -> str:
        return self._cfg.prefix

    async def start(self) -> None:
        self.redis = await _redis.connect(self._cfg.url, self._cfg.socket_timeout_s, f"cache {self._tier}")
        self._get_script = self.redis.register_script(_GET_OR_LEASE)
        self._fill_script = self.redis.register_script(_FILL)

    async def close(self) -> None:
        if self.redis is not None:
            await _redis.close(self.redis, self._cfg.socket_timeout_s)
            self.redis = None

    async def _flush_pending_deletes(self, r: aioredis.Redis) -> None:
        if not self._pending_deletes:
            return
        pending = list(self._pending_deletes)
        keys = [k for name, key in pending for k in (self._key(name, key), self._lease(name, key))]
        await r.delete(*keys)
        self._pending_deletes.difference_update(pending)

    async def get(self, name: str, key: str) -> Any:
        r = self.redis
        if r is None:
            self._metrics.cache_misses.labels(self._tier, name).inc()
            return MISS
        token = secrets.token_bytes(8)
        try:
            await self._flush_pending_deletes(r)
            async with r.pipeline(transaction=False) as pipe:
                await self._get_script(
                    keys=[self._key(name, key), self._lease(name, key)],
                    args=[token, self._cfg.lease_ms],
                    client=pipe,
                )
                sample = self._cfg.hot_sample > 0 and self._sample()
                if sample:
                    pipe.zincrby(self._hot(name), 1, key)
                replies = await pipe.execute()
            if sample:
                await self._maybe_trim(r, name)
        except RedisError as exc:
            log.debug("l2 get %s/%s failed: %r", name, key, exc)
            self._metrics.cache_misses.labels(self._tier, name).inc()
            return MISS
        reply = replies[0]
        if int(reply[0]) == 1:
            self._metrics.cache_hits.labels(self._tier, name).inc()
            return orjson.loads(reply[1])
        self._metrics.cache_misses.labels(self._tier, name).inc()
        self._leases[(name, key)] = token
        return MISS

    def _sample(self) -> bool:
        self._sampled += 1
        return self._sampled % self._cfg.hot_sample == 0

    async def _maybe_trim(self, r: aioredis.Redis, name: str) -> None:
        if self._sampled % (self._cfg.hot_sample * 1024) == 0:
            await r.zremrangebyrank(self._hot(name), 0, -(self._cfg.hot_keep + 1))

    async def set(self, name: str, key: str, value: Any) -> None:
        r = self.redis
        if r is None:
            return
        data = orjson.dumps(value)
        token = self._leases.pop((name, key), None)
        try:
            if token is None:  # a writer's update, not a read-through fill
                await r.set(self._key(name, key), data, px=self._ttl_ms)
            else:
                await self._fill_script(
                    keys=[self._key(name, key), self._lease(name, key)], args=[token, data, self._ttl_ms]
                )
        except RedisError as exc:
            log.debug("l2 set %s/%s failed: %r", name, key, exc)

    async def delete(self, name: str, key: str, publish: tuple[str, bytes] | None = None) -> None:
        """Delete the value and any lease; optionally publish (channel, payload) in the same round trip."""
        r = self.redis
        # A lease this process holds stays recorded: its fill must now fail on the deleted lease, not turn into
        # an unconditional write.
        if r is None:
            self._pending_deletes.add((name, key))
            return
        try:
            async with r.pipeline(transaction=False) as pipe:
                pipe.delete(self._key(name, key), self._lease(name, key))
                if publish is not None:
                    pipe.publish(*publish)
                await pipe.execute()
        except RedisError as exc:
            log.warning("l2 delete %s/%s failed, will retry: %r", name, key, exc)
            self._pending_deletes.add((name, key))

    async def hot_entries(self, name: str, limit: int) -> list[tuple[str, Any]]:
        """The ``limit`` most-read keys of ``name`` that still have a value, most read first."""
        r = self.redis
        if r is None or limit <= 0:
            return []
        raw: list[Any] = list(await r.zrevrange(self._hot(name), 0, limit - 1))
        keys = [k.decode() if isinstance(k, bytes) else str(k) for k in raw]
        if not keys:
            return []
        values = await r.mget([self._key(name, k) for k in keys])
        return [(k, orjson.loads(v)) for k, v in zip(keys, values, strict=True) if v is not None]
