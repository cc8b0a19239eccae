"""The packed dedup window (strategies/dedup/memory.py) against a plain model, on fake time, with hash collisions
forced: the index hash squeezed into a few values so probe runs, wrap-around and backward-shift deletion all
happen, while every key keeps its own check hash."""

from __future__ import annotations

import gc
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from core.clock import FakeClock
from core.metrics import Metrics
from strategies.context import StrategyContext
from strategies.dedup import memory
from strategies.dedup.base import DedupRecord
from strategies.dedup.config import MemoryDedupConfig

T = TypeVar("T")
KEYS = [f"{u}:dev:c{i}" for u in range(3) for i in range(6)]
WINDOW_S = 10.0
CAPACITY = 8


def squeezed(key: str) -> tuple[int, int]:
    """Index hashes in {14, 15, 1, 30} of a 16-cell index (30 lands on 14, runs wrap past the last cell); check
    hashes distinct per key."""
    return (14, 15, 1, 30)[KEYS.index(key) % 4], 1000 + KEYS.index(key)


def done(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (the ring's methods), without an event loop per hypothesis step."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    raise AssertionError("suspended")


def record(key: str, n: int) -> DedupRecord:
    return DedupRecord(n, f"d:{key.split(':', maxsplit=1)[0]}:9", n + 1, 1_700_000_000_000 + n, f"{n:032x}")


def make(clock: FakeClock, capacity: int = CAPACITY, window_s: float = WINDOW_S) -> memory.MemoryDeduplicator:
    cfg = MemoryDedupConfig(window_s=window_s, max_entries=capacity)
    return memory.MemoryDeduplicator(cfg, StrategyContext(clock, Metrics(), Path(), "test"))


class RingMachine(RuleBasedStateMachine):
    """Model: the ring's slots in arrival order, each (key, record, expiry, live); a remember of a key kills its
    older slot, a full ring drops its oldest slot, expiry drops old slots from the front."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.ring = make(self.clock)
        self.slots: list[list[object]] = []
        self.n = 0

    def _model_expire(self) -> None:
        now = self.clock.monotonic()
        while self.slots and (not self.slots[0][3] or self.slots[0][2] <= now):  # type: ignore[operator]
            self.slots.pop(0)

    def _model_lookup(self, key: str) -> DedupRecord | None:
        self._model_expire()
        for k, rec, _, live in self.slots:
            if live and k == key:
                return rec  # type: ignore[return-value]
        return None

    @rule(key=st.sampled_from(KEYS))
    def remember(self, key: str) -> None:
        self.n += 1
        rec = record(key, self.n)
        self._model_expire()
        for slot in self.slots:
            if slot[0] == key:
                slot[3] = False
        if len(self.slots) == CAPACITY:
            self.slots.pop(0)
        self.slots.append([key, rec, self.clock.monotonic() + WINDOW_S, True])
        done(self.ring.remember(key, rec))

    @rule(key=st.sampled_from(KEYS))
    def lookup(self, key: str) -> None:
        assert done(self.ring.lookup(key)) == self._model_lookup(key)

    @rule(seconds=st.sampled_from([0.5, 3.0, 9.9, 10.0, 25.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @invariant()
    def same_live_keys(self) -> None:
        self._model_expire()
        assert len(self.ring) == sum(1 for s in self.slots if s[3])


@pytest.fixture
def squeezed_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "key_hashes", squeezed)


@pytest.mark.usefixtures("squeezed_hashes")
def test_ring_matches_the_model_with_colliding_index_hashes() -> None:
    machine = RingMachine.TestCase
    machine.settings = settings(max_examples=80, stateful_step_count=50)
    machine().runTest()


@pytest.mark.usefixtures("squeezed_hashes")
async def test_keys_sharing_an_index_hash_never_answer_for_each_other() -> None:
    """Every key below lands on the same probe run; a key never remembered is not found, each finds its own."""
    ring = make(FakeClock(), capacity=len(KEYS))
    same_slot = [k for k in KEYS if squeezed(k)[0] == 14]
    for i, key in enumerate(same_slot[:-1]):
        await ring.remember(key, record(key, i))
    for i, key in enumerate(same_slot[:-1]):
        assert await ring.lookup(key) == record(key, i)
    assert await ring.lookup(same_slot[-1]) is None  # same index hash, never sent: a genuine new message


async def test_expiry_is_fifo_on_fake_time() -> None:
    clock = FakeClock()
    ring = make(clock, capacity=1000, window_s=300.0)
    for i in range(600):
        await ring.remember(f"1:dev:c{i}", record("1:dev:c", i))
        clock.advance(0.5)  # the first remembered at t=0, the last at t=299.5
    clock.advance(0.25)  # now t = 300.25: the first is just out of its window
    assert await ring.lookup("1:dev:c0") is None
    assert await ring.lookup("1:dev:c1") == record("1:dev:c", 1)
    assert len(ring) == 599
    clock.advance(150.0)
    assert await ring.lookup("1:dev:c300") is None
    assert await ring.lookup("1:dev:c301") == record("1:dev:c", 301)
    clock.advance(300.0)
    assert len(ring) == 0


async def test_full_ring_forgets_the_oldest() -> None:
    ring = make(FakeClock(), capacity=4)
    for i in range(6):
        await ring.remember(f"1:dev:c{i}", record("1:dev:c", i))
    assert [await ring.lookup(f"1:dev:c{i}") is not None for i in range(6)] == [
        False,
        False,
        True,
        True,
        True,
        True,
    ]


async def test_records_that_do_not_fit_round_trip() -> None:
    ring = make(FakeClock())
    long_conv = DedupRecord(1, "g:" + "9" * 80, 2, 3, "ABCDEF" * 6)  # 82-byte conv, uppercase fingerprint
    await ring.remember("1:dev:x", long_conv)
    await ring.remember("1:dev:y", record("1:dev:y", 5))
    assert await ring.lookup("1:dev:x") == long_conv
    assert await ring.lookup("1:dev:y") == record("1:dev:y", 5)


@pytest.mark.slow  # fills a large window to count the collector's objects: seconds
async def test_window_holds_no_gc_tracked_object_per_record() -> None:
    ring = make(FakeClock(), capacity=5000)
    gc.collect()
    before = len(gc.get_objects())
    for i in range(5000):
        await ring.remember(f"7:dev:c{i}", record("7:dev:c", i))
    gc.collect()
    assert len(gc.get_objects()) - before < 100
    assert await ring.lookup("7:dev:c4999") == record("7:dev:c", 4999)
