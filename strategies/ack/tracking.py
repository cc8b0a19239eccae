"""Delivery trackers: the server-side bookkeeping of one device connection (sans-I/O), made by the ACK policy.

A pushed message stays *pending* until the device acknowledges it (``message.ack`` is cumulative per
conversation: "I hold everything up to seq N"). When an ack does not come within the wait the retry policy gives
for that attempt, the message is pushed again; after the last retry it is handed back as dead-lettered. The
driver only writes frames and sleeps until :meth:`next_deadline`.

Trackers never lose a message: a dead-lettered or never-acked message stays in the durable store, and the device
gets it on its next sync. Tracking exists to repair losses *on a live connection* quickly.

Two things keep a healthy but busy connection from being pushed again merely because its ack is late: the retry
policy may learn the device's round trip (each ack of a never-retried push is a sample, Karn's rule), and a
deadline that falls while the device's own inbound frames still wait to be processed (its ack may be among them)
is extended once by another wait instead of firing.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from strategies.ack.base import GiveUp, Pending, Resend, TrackerEvent

if TYPE_CHECKING:
    from strategies.retry.base import DeviceRetry, RetryPolicy


class NullTracker:
    """Tracks nothing: the ``off`` ack policy's fire-and-forget delivery."""

    def track(self, msg_id: int, conv: str, seq: int, frame: str, now: float) -> None:
        return None

    def ack(self, conv: str, seq: int, now: float | None = None) -> int:
        return 0

    def settle(self, conv: str, seq: int, now: float | None = None) -> bool:
        return False

    def due(self, now: float, inbound_waiting: bool = False) -> list[TrackerEvent]:
        return []

    def next_deadline(self) -> float | None:
        return None

    def pending_count(self) -> int:
        return 0


@dataclass
class RetryingTracker:
    """Pending deliveries of one device, retried on the schedule of a :class:`RetryPolicy`.

    ``max_pending`` bounds memory: beyond it the oldest pending entry is given up at once (it stays in the store;
    the device gets it on sync). A device that never acks cannot make the server hold unbounded state.
    """

    retry: RetryPolicy
    max_pending: int = 10_000
    _by_conv: dict[str, dict[int, Pending]] = field(default_factory=dict)
    _heap: list[tuple[float, int, Pending]] = field(default_factory=list)
    _count: int = 0
    _tie: int = 0
    _overflow: list[Pending] = field(default_factory=list)
    _timing: DeviceRetry = field(init=False)

    def __post_init__(self) -> None:
        self._timing = self.retry.for_device()

    def track(self, msg_id: int, conv: str, seq: int, frame: str, now: float) -> None:
        per_conv = self._by_conv.setdefault(conv, {})
        if seq in per_conv:  # already pending (e.g. pushed again by a bus replay): keep the first schedule
            return
        wait = self._timing.wait_s(0)
        p = Pending(msg_id, conv, seq, frame, 0, now + wait, False, now, wait)
        per_conv[seq] = p
        self._count += 1
        self._push(p)
        if self._count > self.max_pending:
            self._overflow.append(self._evict_oldest())

    def _push(self, p: Pending) -> None:
        self._tie += 1
        heapq.heappush(self._heap, (p.deadline, self._tie, p))

    def _settle(self, p: Pending) -> None:
        p.done = True
        per_conv = self._by_conv.get(p.conv)
        if per_conv is not None:
            per_conv.pop(p.seq, None)
            if not per_conv:
                del self._by_conv[p.conv]
        self._count -= 1

    def _evict_oldest(self) -> Pending:
        while True:
            _, _, p = heapq.heappop(self._heap)
            if not p.done:
                self._settle(p)
                return p

    def ack(self, conv: str, seq: int, now: float | None = None) -> int:
        per_conv = self._by_conv.get(conv)
        if not per_conv:
            return 0
        settled = [p for s, p in per_conv.items() if s <= seq]
        rtt = -1.0
        for p in settled:
            self._settle(p)
            if p.attempt == 0 and now is not None:
                rtt = max(rtt, now - p.sent_at)
        if rtt >= 0:
            # One sample per ack, the oldest push it covers: the deadline must cover a cumulative ack's delay.
            self._timing.observe_rtt(rtt)
        return len(settled)

    def settle(self, conv: str, seq: int, now: float | None = None) -> bool:
        p = self._by_conv.get(conv, {}).get(seq)
        if p is None:
            return False
        self._settle(p)
        if p.attempt == 0 and now is not None:
            self._timing.observe_rtt(now - p.sent_at)
        return True

    def due(self, now: float, inbound_waiting: bool = False) -> list[TrackerEvent]:
        events: list[TrackerEvent] = [GiveUp(p) for p in self._overflow]
        self._overflow.clear()
        heap = self._heap
        timing = self._timing
        while heap and (heap[0][2].done or heap[0][0] <= now):
            _, _, p = heapq.heappop(heap)
            if p.done:
                continue
            if inbound_waiting and not p.extended:
                p.extended = True
                p.deadline = now + p.wait
                self._push(p)
                continue
            if p.attempt < timing.max_retries:
                if p.attempt == 0:
                    timing.observe_timeout()
                p.attempt += 1
                p.wait = timing.wait_s(p.attempt)
                p.sent_at = now
                p.extended = False
                p.deadline = now + p.wait
                self._push(p)
                events.append(Resend(p))
            else:
                self._settle(p)
                events.append(GiveUp(p))
        return events

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2].done:
            heapq.heappop(heap)
        if self._overflow:
            return float("-inf")
        return heap[0][0] if heap else None

    def pending_count(self) -> int:
        return self._count
