"""Injected time (see STYLE.md, principle 6).

Pure code takes ``now`` as an argument; drivers ask a :class:`Clock`. Two readings are kept apart on purpose:
``monotonic()`` for deadlines (never jumps) and ``wall_ms()`` for timestamps that leave the process (message
times, snowflake ids, token expiry), which may jump backwards and must be handled where they are used.

The clock also owns the node's timers (``call_at``/``call_later``, as Synapse's Clock does), so that drivers
never call ``loop.call_later`` themselves and tests drive every timer with :meth:`FakeClock.advance`. The system
clock keeps them in one coarse timer wheel: scheduling is a dict lookup and a list append, cancelling sets a
flag, and one event-loop timer wakes the wheel at its earliest slot, however many timers are armed. A timer fires
at, or up to ``resolution_s`` after, its time; never before.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections.abc import Callable
from typing import Any, Protocol


class Timer:
    """A scheduled call; ``cancel()`` is cheap (a flag) and idempotent."""

    __slots__ = ("args", "callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; only differences are meaningful."""
        ...

    def wall_ms(self) -> int:
        """Milliseconds since the Unix epoch (may go backwards when the system clock is stepped)."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> Timer:
        """Call ``callback(*args)`` on the event loop once ``monotonic()`` reaches ``when``."""
        ...

    def call_later(self, delay_s: float, callback: Callable[..., object], *args: Any) -> Timer: ...


class SystemClock:
    """Real time; timers in a wheel of ``resolution_s`` slots driven by one event-loop timer."""

    def __init__(self, resolution_s: float = 0.01) -> None:
        self._res = resolution_s
        self._slots: dict[int, list[Timer]] = {}
        self._order: list[int] = []  # heap of the slots in use
        self._armed: int | None = None  # the slot the loop timer is set for
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> Timer:
        timer = Timer(when, callback, args)
        slot = math.ceil(when / self._res)
        bucket = self._slots.get(slot)
        if bucket is None:
            self._slots[slot] = [timer]
            heapq.heappush(self._order, slot)
        else:
            bucket.append(timer)
        # Re-arm when this slot is the earliest, or when the clock outlived the loop it was armed on (tests).
        if self._armed is None or slot < self._armed or self._loop is not asyncio.get_running_loop():
            self._arm(self._order[0])
        return timer

    def call_later(self, delay_s: float, callback: Callable[..., object], *args: Any) -> Timer:
        return self.call_at(time.monotonic() + delay_s, callback, *args)

    def _arm(self, slot: int) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed = slot
        self._loop = loop = asyncio.get_running_loop()
        delay = max(0.0, slot * self._res - time.monotonic())
        self._handle = loop.call_later(delay, self._run)

    def _run(self) -> None:
        self._handle = self._armed = None
        now = time.monotonic()
        order, slots = self._order, self._slots
        while order and order[0] * self._res <= now:
            for timer in slots.pop(heapq.heappop(order)):
                if not timer.cancelled:
                    timer.cancelled = True  # fired: a late cancel() is a no-op
                    try:
                        timer.callback(*timer.args)
                    except Exception as exc:  # one failing callback must not stop the others
                        asyncio.get_running_loop().call_exception_handler(
                            {"message": "clock timer callback failed", "exception": exc}
                        )
        if order:
            self._arm(order[0])

    def pending_timers(self) -> int:
        """Armed, uncancelled timers (for tests and metrics)."""
        return sum(1 for bucket in self._slots.values() for t in bucket if not t.cancelled)

    def monotonic(self) -> float:
        return time.monotonic()

    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FakeClock:
    """A clock tests move by hand: ``advance`` fires every timer that falls due, in time order, each seeing
    ``monotonic()`` at its own time, and wakes every ``sleep`` that ends by then."""

    def __init__(self, start_wall_ms: int = 1_700_000_000_000, start_monotonic: float = 1000.0) -> None:
        self._wall_ms = start_wall_ms
        self._mono = start_monotonic
        self._timers: list[tuple[float, int, Timer]] = []
        self._tie = 0

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> Timer:
        timer = Timer(when, callback, args)
        self._tie += 1
        heapq.heappush(self._timers, (when, self._tie, timer))
        return timer

    def call_later(self, delay_s: float, callback: Callable[..., object], *args: Any) -> Timer:
        return self.call_at(self._mono + delay_s, callback, *args)

    def pending_timers(self) -> int:
        return sum(1 for _, _, t in self._timers if not t.cancelled)

    def monotonic(self) -> float:
        return self._mono

    def wall_ms(self) -> int:
        return self._wall_ms

    def advance(self, seconds: float) -> None:
        target = self._mono + seconds
        wall_target = self._wall_ms + int(seconds * 1000)
        timers = self._timers
        while timers and timers[0][0] <= target:
            when, _, timer = heapq.heappop(timers)
            if timer.cancelled:
                continue
            if when > self._mono:  # time moves to the timer's own time (wall clock along with it)
                self._wall_ms += int((when - self._mono) * 1000)
                self._mono = when
            timer.cancelled = True
            timer.callback(*timer.args)
        self._mono = target
        self._wall_ms = wall_target

    def set_wall_ms(self, wall_ms: int) -> None:
        """Step the wall clock (e.g. backwards) without touching the monotonic clock."""
        self._wall_ms = wall_ms

    async def sleep(self, seconds: float) -> None:
        """Wait until the test advances the clock past ``seconds`` from now (a timer like any other).

        It does not advance time itself: a whole node runs on one fake clock, and a background loop that slept by
        moving time (a sweeper, an indexer) would race time forward under every other timer of the node."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        done = asyncio.get_running_loop().create_future()
        self.call_later(seconds, _resolve, done)
        await done


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():  # a cancelled sleeper
        fut.set_result(None)
