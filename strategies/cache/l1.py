from __future__ import annotations

import itertools
from typing import Any

from cachetools import LRUCache, TTLCache

from strategies.cache.base import MISS
from strategies.cache.config import L1CacheConfig
from strategies.context import StrategyContext


class _CountingTTLCache(TTLCache[str, Any]):
    """TTLCache that counts capacity evictions (cachetools calls ``popitem`` only to make room)."""

    def __init__(self, maxsize: int, ttl: float, timer: Any, evictions: Any) -> None:
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

    Read-through race: a reader that missed, loads from the store and then fills could put back a value that a
    writer invalidated while the load ran. Every miss remembers the invalidation counter, and a fill for a key
    deleted since that miss is dropped, so a fill never resurrects an invalidated value.
    """

    def __init__(self, config: L1CacheConfig, ctx: StrategyContext, tier: str = "l1") -> None:
        self._cfg = config
        self._timer = ctx.clock.monotonic
        self._metrics = ctx.metrics
        self._tier = tier
        self._maps: dict[str, _CountingTTLCache] = {}
        self._hit_miss: dict[str, tuple[Any, Any]] = {}
        self._counter = itertools.count(1)
        self._missed: LRUCache[tuple[str, str], int] = LRUCache(maxsize=config.max_entries)
        self._deleted: LRUCache[tuple[str, str], int] = LRUCache(maxsize=config.max_entries)
        self._cleared_at = 0

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

    def peek(self, name: str, key: str) -> Any:
        """The value or MISS, counting a hit or a miss; a miss opens a fill window (see the class docstring)."""
        m = self._maps.get(name) or self._map(name)
        try:
            value = m[key]  # one lookup: TTLCache.get() would look twice (contains, then getitem)
        except KeyError:
            self._counters(name)[1].inc()
            self._missed[(name, key)] = next(self._counter)
            return MISS
        self._counters(name)[0].inc()
        return value

    def _counters(self, name: str) -> tuple[Any, Any]:
        pair = self._hit_miss.get(name)
        if pair is None:
            pair = self._hit_miss[name] = (
                self._metrics.cache_hits.labels(self._tier, name),
                self._metrics.cache_misses.labels(self._tier, name),
            )
        return pair

    def fill(self, name: str, key: str, value: Any) -> None:
        opened = self._missed.pop((name, key), None)
        if opened is not None:
            deleted = self._deleted.get((name, key), 0)
            if deleted > opened or self._cleared_at > opened:
                return  # invalidated while the value was being loaded
        self._map(name)[key] = value

    def evict(self, name: str, key: str) -> None:
        self._deleted[(name, key)] = next(self._counter)
        self._map(name).pop(key, None)

    def clear(self) -> None:
        """Forget everything (e.g. after missing invalidations while disconnected)."""
        self._cleared_at = next(self._counter)
        for m in self._maps.values():
            m.clear()

    async def get(self, name: str, key: str) -> Any:
        return self.peek(name, key)

    async def set(self, name: str, key: str, value: Any) -> None:
        self.fill(name, key, value)

    async def delete(self, name: str, key: str) -> None:
        self.evict(name, key)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._maps.clear()
