"""Keep the collector's young generations small while connections and long-lived state come and go.

``gc.freeze()`` at start-up covers only the start-up heap. A ramp of thousands of connections leaves each
connection's objects (link, session, tracker, protocol, buffers) in generations 0 and 1, and every collection of
generation 1 traverses all of them: 650-905 ms pauses during a 10,000-connection ramp (issue 11). ``gc.freeze()``
moves every object tracked at that moment to the permanent generation (a list splice, no traversal), so later
collections see only what was made after it.

Why the triggers are connections and a timer, not only CPython's allocation count: generation 0 is collected when
allocations minus deallocations reach the threshold, and deallocations of *older* objects (frozen ones, or
survivors of an earlier collection: closed connections, and each connection's pending await chain, which it
replaces at every frame it handles) count too. They cancel new allocations, so generation 0 held 30,000-230,000
objects while the count read 0-234 (measured, docs/performance.md) and the collection that finally ran took
40-200 ms. A generation-0 collection costs about
0.5 µs per object here, so bounding the pause means bounding generation 0's size, which the count does not.

The price: garbage that is already in a reference cycle at a freeze is never collected (``gc.unfreeze()`` would
give it back, at the cost of one full collection). A collection of generation 0 just before each freeze takes the
young garbage first; what remains survived a collection, which in this server is connections and per-conversation
state, and a frozen object that loses its last reference is still freed by reference counting.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass

from core.clock import Clock, Timer


def freeze_young() -> None:
    """Collect generation 0, then freeze everything tracked.

    Not ``gc.get_freeze_count()`` afterwards: it walks the permanent generation, 16 ms at 2 million objects, a
    stall of the loop at every freeze that no collector callback would show."""
    gc.collect(0)
    gc.freeze()


def settle_young() -> bool:
    """Collect generation 0; once generation 1 is due, freeze instead of collecting it. True if it froze.

    An explicit ``gc.collect(0)`` counts towards generation 1 but never collects it (only the allocation trigger
    does), and generation 1 then holds whatever outlived a collection: 126,000 objects of per-conversation state
    after a few seconds of traffic, a 98 ms collection. Freezing them costs nothing, they are long-lived, and the
    freeze resets the generations' counts."""
    gc.collect(0)
    if gc.get_count()[1] > gc.get_threshold()[1]:
        gc.freeze()
        return True
    return False


@dataclass(eq=False)
class ConnectionFreezer:
    """Every ``every`` connections opened: collect generation 0 and freeze (a ramp's connections never reach
    generation 1). Every ``every`` connections closed, and every ``interval_s`` on the clock: collect generation 0
    and settle generation 1 (a mass disconnect or steady traffic frees older objects, which hides allocations
    from the count; 5,000 closes at once left 186,000 objects for one 130 ms collection)."""

    every: int
    clock: Clock | None = None
    interval_s: float = 0.1
    freeze: Callable[[], None] = freeze_young
    settle: Callable[[], bool] = settle_young
    on_freeze: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError("every must be >= 1")
        self._timer: Timer | None = None
        self._opened = 0
        self._closed = 0
        self.freezes = 0
        self.collections = 0

    def start(self) -> None:
        if self.clock is not None and self._timer is None:
            self._timer = self.clock.call_later(self.interval_s, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def opened(self) -> None:
        self._opened += 1
        if self._opened >= self.every:
            self._opened = 0
            self.freeze()
            self._froze()

    def closed(self) -> None:
        self._closed += 1
        if self._closed >= self.every:
            self._closed = 0
            self._collect()

    def _tick(self) -> None:
        self._collect()
        assert self.clock is not None
        self._timer = self.clock.call_later(self.interval_s, self._tick)

    def _collect(self) -> None:
        self.collections += 1
        if self.settle():
            self._froze()

    def _froze(self) -> None:
        self.freezes += 1
        if self.on_freeze is not None:
            self.on_freeze()
