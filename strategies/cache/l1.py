from __future__ import annotations

from typing import Any

from cachetools import TTLCache
from prometheus_client import Counter

from strategies.cache.base import MISS
from strategies.cache.config import L1CacheConfig
from strategies.context import StrategyContext


class _CountingTTLCache(TTLCache[str, Any]):
    """TTLCache that counts capacity evictions (cachetools calls ``popitem`` only to make room)."""

    def __init__(self, maxsize: int, ttl: float, timer: Any, evictions: Counter) -> None:
        super().__init__(maxsize=maxsize, ttl=ttl, timer=timer)
        self._evictions = evictions

    def popitem(self) -> tuple[str, Any]:
        item = super().popitem()
        self._evictions.inc()
        return item


class L1Cache:
    """In-process TTL cache (cachetools), one LRU-bounded map per cache name.

    Consistency: this node's writes invalidate it immediately. Another node's writes reach it only through
    cross-node invalidation (the ``l1+l2`` tier) or when the entry's TTL (5 min) runs out, so on a cluster with this
    tier alone a reader may see a value up to ``ttl_s`` old.
    """

    def __init__(self, config: L1CacheConfig, ctx: StrategyContext, tier: str = "l1") -> None:
        self._cfg = config
        self._timer = ctx.clock.monotonic
        self._metrics = ctx.metrics
        self._tier = tier
        self._maps: dict[str, _CountingTTLCache] = {}

    def _map(self, name: str) -> _CountingTTLCache:
        m = self._maps.get(name)
        if m is None:
            m = self._maps[name] = _CountingTTLCache(
                self._cfg.max_entries,
                self._cfg.ttl_s,
                self._timer,
                self._metrics.cache_evictions.labels(self._tier, name),
            )
        return m

    async def get(self, name: str, key: str) -> Any:
        value = self._map(name).get(key, MISS)
        if value is MISS:
            self._metrics.cache_misses.labels(self._tier, name).inc()
        else:
            self._metrics.cache_hits.labels(self._tier, name).inc()
        return value

    async def set(self, name: str, key: str, value: Any) -> None:
        self._map(name)[key] = value

    async def delete(self, name: str, key: str) -> None:
        self._map(name).pop(key, None)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._maps.clear()
