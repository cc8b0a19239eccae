"""Keep the objects of long-lived connections out of the collector's young generations.

``gc.freeze()`` at start-up covers only the start-up heap. A ramp of thousands of connections leaves each
connection's objects (link, session, tracker, protocol, buffers) in generations 0 and 1, and every collection of
generation 1 traverses all of them: 650-905 ms pauses during a 10,000-connection ramp (issue 11). ``gc.freeze()``
moves every object tracked at that moment to the permanent generation (a list splice, no traversal), so later
collections see only what was made after it.

The price: garbage that is already in a reference cycle at a freeze is never collected (``gc.unfreeze()`` would
give it back, at the cost of one full collection). A collection of generation 0 just before each freeze takes the
young garbage first; what remains is what survived a collection, which in this server is mostly the connections
themselves. Freezes happen only when connections grew by ``every`` since the last one, so the frozen heap grows
with the connection high-water mark, not with time or messages.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

from core.clock import Clock, Timer


class FreezePolicy:
    """When to freeze: once the connection count has grown by ``every`` since the last freeze (or since its
    lowest point after it: connections that closed and came back are new objects too)."""

    def __init__(self, every: int) -> None:
        if every < 1:
            raise ValueError("every must be >= 1")
        self.every = every
        self._base = 0

    def due(self, connections: int) -> bool:
        self._base = min(self._base, connections)
        if connections - self._base >= self.every:
            self._base = connections
            return True
        return False


def freeze_young() -> int:
    """Collect generation 0, then freeze everything tracked; returns the permanent generation's size."""
    gc.collect(0)
    gc.freeze()
    return gc.get_freeze_count()


class RampFreezer:
    """Checks the policy every ``interval_s`` on the node's clock (fake time in tests)."""

    def __init__(
        self,
        clock: Clock,
        policy: FreezePolicy,
        connections: Callable[[], int],
        interval_s: float = 0.1,
        freeze: Callable[[], int] = freeze_young,
        on_freeze: Callable[[int], None] | None = None,
    ) -> None:
        self._clock = clock
        self._policy = policy
        self._connections = connections
        self._interval_s = interval_s
        self._freeze = freeze
        self._on_freeze = on_freeze
        self._timer: Timer | None = None
        self.freezes = 0

    def start(self) -> None:
        if self._timer is None:
            self._timer = self._clock.call_later(self._interval_s, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        if self._policy.due(self._connections()):
            frozen = self._freeze()
            self.freezes += 1
            if self._on_freeze is not None:
                self._on_freeze(frozen)
        self._timer = self._clock.call_later(self._interval_s, self._tick)
