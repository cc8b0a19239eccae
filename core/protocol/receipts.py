"""Receipt coalescing (sans-I/O): at most one ``receipt`` per conversation and user per window, and only when a
mark advances.

Why: a ``message.ack`` or ``message.read`` used to fan a receipt out to every other member device, whether or
not it moved anything, so one member could make 499 pushes per frame in a 500-member group (issue 14, M1). Now
a mark that is not above what was already announced (or is waiting to be) produces nothing, and marks that
advance within one window leave as a single receipt carrying the highest marks.

Shape: the first advance after a quiet window is due at once (no added latency for a lone message); later ones
wait until ``window_s`` after the previous receipt of the same (conv, user). The driver calls :meth:`offer` for
every mark, sends what it returns, and calls :meth:`flush` at :meth:`next_due` (see
``ReceiptService._arm_receipt_flush``). State is bounded: announced marks live in an LRU of ``max_keys``
entries; an entry that falls out only means one extra, still correct, receipt later.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from cachetools import LRUCache

Key = tuple[str, int]


@dataclass(frozen=True, slots=True)
class ReceiptDue:
    """One receipt to send now. ``read``/``delivered`` are None when that mark did not advance. ``device`` is
    the device that set the newest read mark: it already knows and is not sent the receipt."""

    conv: str
    user: int
    delivered: int | None
    read: int | None
    device: str | None


@dataclass(slots=True)
class _Pending:
    delivered: int
    read: int
    device: str | None
    due: float


class ReceiptCoalescer:
    def __init__(self, window_s: float, max_keys: int = 100_000) -> None:
        self.window_s = window_s
        # (conv, user) -> [announced delivered, announced read, time of the last receipt]
        self._announced: LRUCache[Key, list[float]] = LRUCache(maxsize=max_keys)
        self._pending: dict[Key, _Pending] = {}
        self._heap: list[tuple[float, Key]] = []

    def offer(
        self,
        conv: str,
        user: int,
        now: float,
        *,
        delivered: int = 0,
        read: int = 0,
        device: str | None = None,
    ) -> list[ReceiptDue]:
        """A mark was stored. Returns the receipt to send at once (a list of at most one), or nothing: the
        mark did not advance, or it waits for :meth:`flush`."""
        key = (conv, user)
        ann = self._announced.get(key)
        ann_d, ann_r, last = (int(ann[0]), int(ann[1]), ann[2]) if ann is not None else (0, 0, float("-inf"))
        pend = self._pending.get(key)
        base_d = max(ann_d, pend.delivered) if pend else ann_d
        base_r = max(ann_r, pend.read) if pend else ann_r
        if delivered <= base_d and read <= base_r:
            return []
        if pend is None:
            pend = _Pending(ann_d, ann_r, None, max(now, last + self.window_s))
            self._pending[key] = pend
            if pend.due > now:
                heapq.heappush(self._heap, (pend.due, key))
        pend.delivered = max(pend.delivered, delivered)
        if read > base_r:
            pend.read = read
            pend.device = device
        if pend.due <= now:
            return [self._emit(key, pend, now)]
        return []

    def _emit(self, key: Key, pend: _Pending, now: float) -> ReceiptDue:
        del self._pending[key]
        ann = self._announced.get(key)
        ann_d, ann_r = (int(ann[0]), int(ann[1])) if ann is not None else (0, 0)
        self._announced[key] = [max(ann_d, pend.delivered), max(ann_r, pend.read), now]
        return ReceiptDue(
            key[0],
            key[1],
            pend.delivered if pend.delivered > ann_d else None,
            pend.read if pend.read > ann_r else None,
            pend.device,
        )

    def flush(self, now: float) -> tuple[list[ReceiptDue], float | None]:
        """The receipts whose window has passed, and when to call again (None: nothing waits)."""
        out: list[ReceiptDue] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, key = heapq.heappop(heap)
            pend = self._pending.get(key)
            if pend is not None and pend.due <= now:
                out.append(self._emit(key, pend, now))
        return out, self.next_due()

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def pending_count(self) -> int:
        return len(self._pending)
