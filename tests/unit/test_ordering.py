from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.protocol.ordering import OrderingBuffer

# Shared with the web client's mirror (tests/js/ordering.test.mjs runs the same cases against ordering.js).
VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "ordering.json").read_text(encoding="utf-8"))[
    "cases"
]


@pytest.mark.parametrize("case", VECTORS, ids=[c["name"] for c in VECTORS])
def test_shared_vectors(case: dict[str, Any]) -> None:
    b: OrderingBuffer[Any] = OrderingBuffer(case["gap_timeout"], case.get("max_buffered", 10_000))
    for i, step in enumerate(case["steps"]):
        op, expect = step["op"], step.get("expect")
        if op == "offer":
            o = b.offer(step["conv"], step["seq"], step.get("item", step["seq"]), step["now"])
            got: Any = {"ready": o.ready, "duplicate": o.duplicate, "needs_sync": o.needs_sync}
        elif op == "set_cursor":
            got = b.set_cursor(step["conv"], step["seq"])
        elif op == "cursor":
            got = b.cursor(step["conv"])
        elif op == "cursors":  # the known ones, as the JS buffer returns them (a waiting conversation has -1)
            got = {conv: seq for conv, seq in b.cursors().items() if seq >= 0}
        elif op == "gaps":
            got = b.gaps(step["now"])
        elif op == "mark_syncing":
            got = b.mark_syncing(step["conv"], step["now"])
        else:
            pytest.fail(f"unknown op {op!r} in step {i}")
        assert got == expect, f"step {i}: {step}"


def test_releases_in_order_and_drops_duplicates() -> None:
    b: OrderingBuffer[int] = OrderingBuffer(gap_timeout_s=1.0)
    b.set_cursor("c", 0)
    assert b.offer("c", 2, 2, 0.0).ready == []
    assert b.offer("c", 1, 1, 0.0).ready == [1, 2]
    o = b.offer("c", 2, 2, 0.0)
    assert o.duplicate and o.ready == []
    assert b.cursor("c") == 2


def test_gap_reported_after_timeout_and_filled_by_sync() -> None:
    b: OrderingBuffer[int] = OrderingBuffer(gap_timeout_s=1.0)
    b.set_cursor("c", 5)
    b.offer("c", 8, 8, now=10.0)
    assert b.gaps(10.5) == []
    assert b.gaps(11.0) == ["c"]
    assert b.gap_deadline() == 11.0
    b.mark_syncing("c", 11.0)
    assert b.gaps(11.5) == []
    assert b.offer("c", 6, 6, 11.6).ready == [6]
    assert b.offer("c", 7, 7, 11.7).ready == [7, 8]
    assert b.gaps(100.0) == []


def test_unknown_conversation_is_held_until_cursor_known() -> None:
    b: OrderingBuffer[int] = OrderingBuffer()
    o = b.offer("new", 4, 4, 0.0)
    assert o.needs_sync and o.ready == []
    assert b.offer("new", 4, 4, 0.0).duplicate
    assert b.set_cursor("new", 2) == []
    assert b.offer("new", 3, 3, 0.0).ready == [3, 4]


def test_set_cursor_never_moves_back_and_drops_covered() -> None:
    b: OrderingBuffer[int] = OrderingBuffer()
    b.set_cursor("c", 10)
    b.set_cursor("c", 3)
    assert b.cursor("c") == 10
    b.offer("c", 12, 12, 0.0)
    assert b.set_cursor("c", 12) == []
    assert b.offer("c", 13, 13, 0.0).ready == [13]


@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1))
def test_any_arrival_order_releases_each_seq_once_in_order(arrivals: list[int]) -> None:
    b: OrderingBuffer[int] = OrderingBuffer()
    b.set_cursor("c", 0)
    released: list[int] = []
    for seq in arrivals + list(range(1, max(arrivals) + 1)):  # a final sync delivers everything
        released += b.offer("c", seq, seq, 0.0).ready
    assert released == list(range(1, max(arrivals) + 1))
