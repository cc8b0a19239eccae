from __future__ import annotations

from cachetools import TTLCache

from strategies.context import StrategyContext
from strategies.dedup.base import DedupRecord
from strategies.dedup.config import MemoryDedupConfig


def dedup_key(sender: int, device: str, cmid: str) -> str:
    return f"{sender}:{device}:{cmid}"


class MemoryDeduplicator:
    """Window in this process (cachetools TTLCache on the injected clock) plus the store's unique key.

    A node restart empties the window; the durable key still stops a late resend from being stored twice, it
    only costs a store round trip. Not shared between nodes: a resend to another node meets the unique index.
    """

    def __init__(self, config: MemoryDedupConfig, ctx: StrategyContext) -> None:
        self._cache: TTLCache[str, DedupRecord] = TTLCache(
            maxsize=config.max_entries, ttl=config.window_s, timer=ctx.clock.monotonic
        )

    def durable_key(self, sender: int, device: str, cmid: str) -> str | None:
        return dedup_key(sender, device, cmid)

    async def lookup(self, key: str) -> DedupRecord | None:
        return self._cache.get(key)

    async def remember(self, key: str, record: DedupRecord) -> None:
        self._cache[key] = record

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._cache.clear()
