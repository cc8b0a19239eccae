"""The ramp freezer: a freeze each time the connection count has grown by ``every`` since the last one, checked
on the node's clock (here fake time), and never while the count is flat or falling."""

from __future__ import annotations

import gc

import pytest

from core.clock import FakeClock
from core.gcpolicy import FreezePolicy, RampFreezer, freeze_young


def test_policy_fires_per_step_of_growth_and_counts_reconnects_after_a_dip() -> None:
    policy = FreezePolicy(every=100)
    assert [policy.due(n) for n in (0, 50, 99, 100, 150, 199, 200)] == [
        False, False, False, True, False, False, True,
    ]  # fmt: skip
    assert not policy.due(200)  # flat: nothing new to freeze
    assert not policy.due(20)  # 180 closed
    assert not policy.due(119)
    assert policy.due(120)  # 100 new connections since the low point: new objects, even at a lower count
    with pytest.raises(ValueError):
        FreezePolicy(every=0)


def test_freezer_ticks_on_the_clock_and_reports_each_freeze() -> None:
    clock = FakeClock()
    count = [0]
    frozen: list[int] = []
    freezer = RampFreezer(
        clock,
        FreezePolicy(every=500),
        lambda: count[0],
        interval_s=0.5,
        freeze=lambda: 1000 + len(frozen),
        on_freeze=frozen.append,
    )
    freezer.start()
    for step in range(1, 21):  # a ramp of 2,000 connections/s for 5 s, seen every 0.5 s
        count[0] = min(step * 1000, 10_000)
        clock.advance(0.5)
    assert freezer.freezes == 10  # one per 0.5 s tick while it grows by >= 500; none once it is flat
    assert frozen == list(range(1000, 1010))
    freezer.stop()
    count[0] = 20_000
    clock.advance(5)
    assert freezer.freezes == 10  # stopped: no timer left


def test_freeze_young_moves_live_objects_to_the_permanent_generation() -> None:
    before = gc.get_freeze_count()
    keep = [object() for _ in range(10)] + [[i] for i in range(1000)]  # lists are GC-tracked
    try:
        assert freeze_young() >= before + 1000
    finally:
        gc.unfreeze()  # give the test process's heap back to the collector
        del keep
