from __future__ import annotations

from strategies.context import StrategyContext
from strategies.dedup.base import DedupRecord
from strategies.dedup.config import DedupOffConfig


class DedupOff:
    """No de-duplication: every resend is stored and delivered again (the control arm)."""

    def __init__(self, config: DedupOffConfig, ctx: StrategyContext) -> None:
        del config, ctx

    def durable_key(self, sender: int, device: str, cmid: str) -> str | None:
        return None

    async def lookup(self, key: str) -> DedupRecord | None:
        return None

    async def remember(self, key: str, record: DedupRecord) -> None:
        return None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None
