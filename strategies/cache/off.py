from __future__ import annotations

from typing import Any

from strategies.cache.base import MISS
from strategies.cache.config import CacheOffConfig
from strategies.context import StrategyContext


class CacheOff:
    """Every read goes to the store (misses are still counted, so hit rate is 0 %, not undefined)."""

    def __init__(self, config: CacheOffConfig, ctx: StrategyContext) -> None:
        del config
        self._metrics = ctx.metrics

    async def get(self, name: str, key: str) -> Any:
        self._metrics.cache_misses.labels("off", name).inc()
        return MISS

    async def set(self, name: str, key: str, value: Any) -> None:
        return None

    async def delete(self, name: str, key: str) -> None:
        return None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None
