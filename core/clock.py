"""Injected time (see STYLE.md, principle 6).

Pure code takes ``now`` as an argument; drivers ask a :class:`Clock`. Two readings are kept apart on purpose:
``monotonic()`` for deadlines (never jumps) and ``wall_ms()`` for timestamps that leave the process (message
times, snowflake ids, token expiry), which may jump backwards and must be handled where they are used.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; only differences are meaningful."""
        ...

    def wall_ms(self) -> int:
        """Milliseconds since the Unix epoch (may go backwards when the system clock is stepped)."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FakeClock:
    """A clock tests move by hand; ``sleep`` advances time instead of waiting."""

    def __init__(self, start_wall_ms: int = 1_700_000_000_000, start_monotonic: float = 1000.0) -> None:
        self._wall_ms = start_wall_ms
        self._mono = start_monotonic

    def monotonic(self) -> float:
        return self._mono

    def wall_ms(self) -> int:
        return self._wall_ms

    def advance(self, seconds: float) -> None:
        self._mono += seconds
        self._wall_ms += int(seconds * 1000)

    def set_wall_ms(self, wall_ms: int) -> None:
        """Step the wall clock (e.g. backwards) without touching the monotonic clock."""
        self._wall_ms = wall_ms

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await asyncio.sleep(0)
