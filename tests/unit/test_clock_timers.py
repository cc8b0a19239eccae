"""The clock's timer facility: FakeClock fires due timers on advance; SystemClock's wheel fires, never early."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

from core.clock import FakeClock, SystemClock


def test_fake_clock_fires_due_timers_in_order_at_their_own_time() -> None:
    clock = FakeClock(start_monotonic=0.0)
    fired: list[tuple[str, float]] = []

    def note(name: str) -> None:
        fired.append((name, clock.monotonic()))

    clock.call_later(2.0, note, "b")
    clock.call_at(1.0, note, "a")
    late = clock.call_later(5.0, note, "late")
    cancelled = clock.call_later(1.5, note, "cancelled")
    cancelled.cancel()
    clock.advance(0.5)
    assert fired == []
    clock.advance(2.0)
    assert fired == [("a", 1.0), ("b", 2.0)] and clock.monotonic() == 2.5
    assert clock.pending_timers() == 1
    late.cancel()
    clock.advance(10.0)
    assert len(fired) == 2 and clock.pending_timers() == 0


def test_fake_clock_timer_scheduled_by_a_timer_fires_in_the_same_advance() -> None:
    clock = FakeClock(start_monotonic=0.0)
    fired: list[float] = []

    def again() -> None:
        fired.append(clock.monotonic())
        if len(fired) < 3:
            clock.call_later(1.0, again)

    clock.call_later(1.0, again)
    clock.advance(10.0)
    assert fired == [1.0, 2.0, 3.0]


def test_fake_clock_wall_time_moves_with_fired_timers() -> None:
    clock = FakeClock(start_wall_ms=0, start_monotonic=0.0)
    seen: list[int] = []
    clock.call_later(1.0, lambda: seen.append(clock.wall_ms()))
    clock.advance(3.0)
    assert seen == [1000] and clock.wall_ms() == 3000


async def test_system_clock_fires_at_or_after_the_deadline_in_order() -> None:
    clock = SystemClock(resolution_s=0.01)
    done = asyncio.Event()
    fired: list[tuple[str, float, float]] = []

    def note(name: str, when: float) -> None:
        fired.append((name, when, clock.monotonic()))
        if name == "last":
            done.set()

    now = clock.monotonic()
    clock.call_at(now + 0.05, note, "second", now + 0.05)
    clock.call_at(now + 0.02, note, "first", now + 0.02)
    cancelled = clock.call_at(now + 0.03, note, "cancelled", now + 0.03)
    cancelled.cancel()
    clock.call_later(0.08, note, "last", now + 0.08)
    await asyncio.wait_for(done.wait(), timeout=5.0)
    assert [name for name, _, _ in fired] == ["first", "second", "last"]
    assert all(at >= when for _, when, at in fired)  # never early
    assert clock.pending_timers() == 0


async def test_system_clock_earlier_timer_rearms_the_wheel() -> None:
    clock = SystemClock(resolution_s=0.01)
    done = asyncio.Event()
    order: list[str] = []
    clock.call_later(30.0, order.append, "far")  # arms the loop timer 30 s away
    clock.call_later(0.01, lambda: (order.append("near"), done.set()))
    await asyncio.wait_for(done.wait(), timeout=5.0)
    assert order == ["near"] and clock.pending_timers() == 1


async def test_fake_sleep_waits_for_advance_and_does_not_move_time() -> None:
    clock = FakeClock(start_monotonic=0.0)
    woke: list[float] = []

    async def sleeper() -> None:
        await clock.sleep(5.0)
        woke.append(clock.monotonic())

    task = asyncio.create_task(sleeper())
    for _ in range(3):
        await asyncio.sleep(0)
    assert woke == [] and clock.monotonic() == 0.0  # sleeping moved nothing
    clock.advance(4.0)
    await asyncio.sleep(0)
    assert woke == []
    clock.advance(1.0)
    await task
    assert woke == [5.0]


def _loop_timers(path: Path) -> list[str]:
    """``<something with loop>.call_later/call_at(...)``: an event-loop timer armed outside the clock."""
    return [
        f"{path}:{node.lineno}: {ast.unparse(node.func)}"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("call_later", "call_at")
        and "loop" in ast.unparse(node.func.value)
    ]


def test_no_event_loop_timers_outside_the_clock() -> None:
    """STYLE.md principle 6: drivers schedule through the Clock, so FakeClock drives every timer of a node."""
    root = Path(__file__).resolve().parents[2]
    files = [p for d in ("core", "strategies") for p in sorted((root / d).rglob("*.py"))]
    assert root / "core" / "clock.py" in files
    found = [hit for p in files if p != root / "core" / "clock.py" for hit in _loop_timers(p)]
    assert found == []
    assert _loop_timers(root / "core" / "clock.py")  # the scan does see the wheel's own loop timer
