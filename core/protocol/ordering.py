"""Client-side ordering and de-duplication per conversation (sans-I/O; used by the SDK and the load drivers).

Messages may arrive out of order (fan-out from several senders, retries, cross-node buses) or twice (a retry
after a lost ack, a sync overlapping a push). This buffer releases each conversation's messages to the
application exactly once and strictly in ``seq`` order. A hole that stays open longer than ``gap_timeout_s``
is reported so the driver can fill it with a ``sync`` from the cursor: the durable store is the truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class _Conv(Generic[T]):
    cursor: int  # highest seq released in order
    acked: int = 0  # highest seq acknowledged to the server (kept here: no second map per device)
    buffered: dict[int, T] = field(default_factory=dict)
    gap_since: float | None = None


@dataclass(slots=True)
class Offer(Generic[T]):
    ready: list[T]  # release these, in order
    duplicate: bool  # this seq was already released or buffered
    needs_sync: bool  # unknown conversation: sync it from the server to learn where it starts


class OrderingBuffer(Generic[T]):
    def __init__(self, gap_timeout_s: float = 1.0, max_buffered: int = 10_000) -> None:
        self.gap_timeout_s = gap_timeout_s
        self.max_buffered = max_buffered
        self._convs: dict[str, _Conv[T]] = {}

    def cursor(self, conv: str) -> int | None:
        c = self._convs.get(conv)
        return None if c is None else c.cursor

    def cursors(self) -> dict[str, int]:
        return {conv: c.cursor for conv, c in self._convs.items()}

    def set_cursor(self, conv: str, seq: int) -> list[T]:
        """Learn a conversation's position (from a sync batch): never moves backwards; releases what follows."""
        c = self._convs.get(conv)
        if c is None:
            c = self._convs[conv] = _Conv(cursor=seq)
        elif seq > c.cursor:
            c.cursor = seq
            for s in [s for s in c.buffered if s <= seq]:
                del c.buffered[s]
        return self._drain(c)

    def offer(self, conv: str, seq: int, item: T, now: float) -> Offer[T]:
        c = self._convs.get(conv)
        if c is None:
            # Unknown conversation: hold the message until a sync tells where the stream starts.
            c = self._convs[conv] = _Conv(cursor=-1)
            c.buffered[seq] = item
            c.gap_since = now
            return Offer([], False, True)
        if c.cursor < 0:
            dup = seq in c.buffered
            c.buffered.setdefault(seq, item)
            return Offer([], dup, False)
        if seq <= c.cursor or seq in c.buffered:
            return Offer([], True, False)
        c.buffered[seq] = item
        ready = self._drain(c)
        if c.buffered and c.gap_since is None:
            c.gap_since = now
        if len(c.buffered) > self.max_buffered:
            c.gap_since = float("-inf")  # force a sync now
        return Offer(ready, False, False)

    def _drain(self, c: _Conv[T]) -> list[T]:
        if c.cursor < 0:
            return []
        ready: list[T] = []
        nxt = c.cursor + 1
        while nxt in c.buffered:
            ready.append(c.buffered.pop(nxt))
            c.cursor = nxt
            nxt += 1
        c.gap_since = None if not c.buffered else c.gap_since
        return ready

    def take_unacked(self) -> list[tuple[str, int]]:
        """(conversation, cursor) wherever the cursor moved past the last ack; they count as acknowledged now."""
        moved: list[tuple[str, int]] = []
        for conv, c in self._convs.items():
            if c.cursor > c.acked:
                c.acked = c.cursor
                moved.append((conv, c.cursor))
        return moved

    def forget_ack(self, conv: str) -> None:
        """The server did not get our ack (it pushed again): the next :meth:`take_unacked` repeats it."""
        c = self._convs.get(conv)
        if c is not None:
            c.acked = 0

    def gaps(self, now: float) -> list[str]:
        """Conversations whose hole has been open for longer than the gap timeout."""
        return [
            conv
            for conv, c in self._convs.items()
            if c.gap_since is not None and now - c.gap_since >= self.gap_timeout_s
        ]

    def gap_deadline(self) -> float | None:
        times = [c.gap_since for c in self._convs.values() if c.gap_since is not None]
        return (min(times) + self.gap_timeout_s) if times else None

    def mark_syncing(self, conv: str, now: float) -> None:
        """A sync was requested for ``conv``: restart its gap timer so it is not requested again at once."""
        c = self._convs.get(conv)
        if c is not None and c.gap_since is not None:
            c.gap_since = now
