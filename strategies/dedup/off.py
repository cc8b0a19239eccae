from __future__ import annotations

from typing import Any

from strategies.dedup.base import DedupRecord


class DedupOff:
    """No de-duplication: every resend is stored and delivered again (the control arm)."""

    def __init__(self, *_: Any) -> None:
        pass

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
