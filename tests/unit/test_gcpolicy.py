"""The connection freezer: a generation-0 collection and a freeze after every ``every`` connections opened; a
generation-0 collection after every ``every`` closed and on each tick of the clock (here fake time), settling
generation 1 by a freeze once it is due. Whatever CPython's allocation count says."""

from __future__ import annotations

import gc
from typing import Any

import pytest

from core.clock import FakeClock
from core.gcpolicy import ConnectionFreezer, freeze_young, settle_young


def test_freezes_per_step_of_opened_connections_and_collects_per_step_of_closed_ones() -> None:
    events: list[str] = []
    freezer = ConnectionFreezer(
        every=50,
        freeze=lambda: events.append("freeze"),
        settle=lambda: events.append("collect") is not None,  # never due: no freeze
        on_freeze=lambda: events.append("counted"),
    )
    for _ in range(49):
        freezer.opened()
    assert events == []
    freezer.opened()
    assert events == ["freeze", "counted"] and freezer.freezes == 1
    events.clear()
    for _ in range(100):  # reconnects are new objects too: every 50 opened, whatever closed meanwhile
        freezer.opened()
        freezer.closed()
    assert events == ["freeze", "counted", "collect", "freeze", "counted", "collect"]
    assert freezer.freezes == 3 and freezer.collections == 2
    for _ in range(49):
        freezer.closed()
    assert freezer.collections == 2
    with pytest.raises(ValueError):
        ConnectionFreezer(every=0)


def test_ticks_collect_on_the_clock_and_a_due_generation_one_is_frozen() -> None:
    clock = FakeClock()
    due = iter([False, False, True, False])
    counted: list[int] = []
    freezer = ConnectionFreezer(
        every=1000, clock=clock, interval_s=1.0, settle=lambda: next(due), on_freeze=lambda: counted.append(1)
    )
    freezer.start()
    clock.advance(0.5)
    assert freezer.collections == 0
    clock.advance(3.6)
    assert freezer.collections == 4 and freezer.freezes == 1 and counted == [1]
    freezer.stop()
    clock.advance(10)
    assert freezer.collections == 4  # stopped: no timer left


def test_settle_young_freezes_generation_one_only_when_it_is_due() -> None:
    thresholds = gc.get_threshold()
    keep: list[Any] = []
    try:
        gc.set_threshold(1_000_000, 3, 1_000_000)  # no automatic collection in between
        gc.collect(1)  # generation 1's count starts at 0
        frozen = gc.get_freeze_count()
        results = []
        for _ in range(4):
            keep.append([[i] for i in range(100)])  # survivors, promoted to generation 1
            results.append(settle_young())
        # the 4th collection makes generation 1's count exceed 3
        assert results == [False, False, False, True]
        assert settle_young() is False  # the freeze emptied generation 1 and reset its count
        assert gc.get_freeze_count() >= frozen + 400
        assert gc.get_count()[0] <= 1
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        del keep


def test_freeze_young_moves_live_objects_to_the_permanent_generation() -> None:
    before = gc.get_freeze_count()
    keep = [object() for _ in range(10)] + [[i] for i in range(1000)]  # lists are GC-tracked
    try:
        freeze_young()
        assert gc.get_freeze_count() >= before + 1000
    finally:
        gc.unfreeze()  # give the test process's heap back to the collector
        del keep
