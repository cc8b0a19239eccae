"""Test-only faults a node can inject into itself: crash points in the send path and a skewed wall clock.

The fault campaign (``python -m experiments.campaign``, docs/reliability.md) needs to kill a node at *exact*
points of the send path, which no outside ``kill -9`` can hit reliably. A node started with

    WSIM_FAULT_CRASH_AT=<point>:<n>      e.g. after_store:20
    WSIM_FAULT_MARKER=/path/to/marker    (default: ./wsim-crash-marker)

appends ``<point> <n> <detail>`` to the marker file (fsync'd, so the campaign can show that the point was really
hit) and SIGKILLs itself the ``n``-th time it reaches ``point``. Points, in the order of the send path
(core/services/messaging.py, core/hub.py):

* ``before_store``: the frame is authorized, nothing is written yet;
* ``after_store``: durably stored, not fanned out, not acknowledged;
* ``after_fanout``: handed to the bus, not acknowledged;
* ``after_ack``: ``message.sent`` queued to the sender (the kill waits ``ACK_GRACE_S`` so the ack is written);
* ``mid_fanout``: a node delivering a message to its local devices, after the first of several devices.

With the variables unset ``ARMED`` is None, and every call site is ``if faultpoints.ARMED is not None:``: one
module attribute load and one comparison on the hot path, nothing else.

``WSIM_FAULT_CLOCK_SKEW_MS=<ms>`` shifts the node's wall clock, and ``WSIM_FAULT_CLOCK_BACK_MS=<ms>`` with
``WSIM_FAULT_CLOCK_BACK_AFTER_S=<s>`` steps it back once, that long after start: ids and order must not care.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.clock import Clock, SystemClock, Timer

POINTS = ("before_store", "after_store", "after_fanout", "after_ack", "mid_fanout")
ACK_GRACE_S = 0.05


@dataclass(slots=True)
class CrashPoint:
    point: str
    at: int
    marker: Path
    count: int = 0
    clock: Clock | None = None  # the node's clock (set by the composition root); the grace kill is its timer

    def reached(self, point: str, detail: str = "") -> None:
        """Count a pass through ``point``; at the chosen one write the marker and die."""
        if point != self.point:
            return
        self.count += 1
        if self.count != self.at:
            return
        self.marker.parent.mkdir(parents=True, exist_ok=True)
        with self.marker.open("a", encoding="utf-8") as fh:
            fh.write(f"{point} {self.count} {detail} pid={os.getpid()}\n")
            fh.flush()
            os.fsync(fh.fileno())
        if point == "after_ack":
            (self.clock or SystemClock()).call_later(ACK_GRACE_S, _kill_self)
        else:
            _kill_self()


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def parse_crash_at(value: str, marker: str | None) -> CrashPoint:
    point, _, n = value.partition(":")
    if point not in POINTS:
        raise ValueError(f"WSIM_FAULT_CRASH_AT: unknown point {point!r}; known: {', '.join(POINTS)}")
    at = int(n or "1")
    if at < 1:
        raise ValueError("WSIM_FAULT_CRASH_AT: the count starts at 1")
    return CrashPoint(point, at, Path(marker or "wsim-crash-marker"))


def _from_env() -> CrashPoint | None:
    value = os.environ.get("WSIM_FAULT_CRASH_AT")
    return parse_crash_at(value, os.environ.get("WSIM_FAULT_MARKER")) if value else None


ARMED: CrashPoint | None = _from_env()


class SkewedClock:
    """The system clock shifted by ``skew_ms``, stepped back by ``back_ms`` once ``back_after_s`` have passed."""

    def __init__(self, skew_ms: int, back_ms: int = 0, back_after_s: float = 0.0) -> None:
        self._inner = SystemClock()
        self._skew_ms = skew_ms
        self._back_ms = back_ms
        self._back_at = time.monotonic() + back_after_s

    def monotonic(self) -> float:
        return self._inner.monotonic()

    def wall_ms(self) -> int:
        shift = self._skew_ms
        if self._back_ms and self._inner.monotonic() >= self._back_at:
            shift -= self._back_ms
        return self._inner.wall_ms() + shift

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> Timer:
        return self._inner.call_at(when, callback, *args)  # timers run on monotonic time, which is not skewed

    def call_later(self, delay_s: float, callback: Callable[..., object], *args: Any) -> Timer:
        return self._inner.call_later(delay_s, callback, *args)


def clock_from_env() -> Clock | None:
    """A :class:`SkewedClock` when the clock fault variables are set, else None (the system clock)."""
    skew = int(os.environ.get("WSIM_FAULT_CLOCK_SKEW_MS", "0"))
    back = int(os.environ.get("WSIM_FAULT_CLOCK_BACK_MS", "0"))
    if not skew and not back:
        return None
    return SkewedClock(skew, back, float(os.environ.get("WSIM_FAULT_CLOCK_BACK_AFTER_S", "0")))
