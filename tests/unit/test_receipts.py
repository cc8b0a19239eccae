"""Receipt coalescing on fake time (core/protocol/receipts.py; issue 14 M1, issue 11)."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from core.protocol.receipts import ReceiptCoalescer, ReceiptDue

CONV = "g:7"


def test_a_lone_advance_is_sent_at_once() -> None:
    c = ReceiptCoalescer(window_s=0.05)
    assert c.offer(CONV, 1, 10.0, read=3, device="d") == [ReceiptDue(CONV, 1, None, 3, "d")]
    assert c.next_due() is None


def test_a_mark_that_does_not_advance_sends_nothing() -> None:
    c = ReceiptCoalescer(window_s=0.05)
    c.offer(CONV, 1, 10.0, read=6)
    for now, seq in [(11.0, 1), (12.0, 6), (13.0, 5)]:
        assert c.offer(CONV, 1, now, read=seq) == []
    assert c.next_due() is None and c.pending_count() == 0


def test_advances_within_the_window_leave_as_one_receipt_with_the_highest_marks() -> None:
    c = ReceiptCoalescer(window_s=0.05)
    assert c.offer(CONV, 1, 10.0, delivered=1) != []
    for i in range(2, 50):
        assert c.offer(CONV, 1, 10.0 + i / 10_000, delivered=i) == []
    assert c.offer(CONV, 1, 10.01, read=4, device="web") == []
    assert c.next_due() == 10.05
    assert c.flush(10.049) == ([], 10.05)
    assert c.flush(10.05) == ([ReceiptDue(CONV, 1, 49, 4, "web")], None)
    # the next advance waits for the window after that receipt
    assert c.offer(CONV, 1, 10.06, delivered=50) == []
    assert c.flush(10.11) == ([ReceiptDue(CONV, 1, 50, None, None)], None)


def test_keys_are_independent() -> None:
    c = ReceiptCoalescer(window_s=1.0)
    assert c.offer(CONV, 1, 0.0, read=1) and c.offer(CONV, 2, 0.0, read=1) and c.offer("g:8", 1, 0.0, read=1)


def test_window_zero_sends_every_advance_and_only_advances() -> None:
    c = ReceiptCoalescer(window_s=0.0)
    assert [len(c.offer(CONV, 1, 0.0, read=s)) for s in (1, 2, 2, 1, 3)] == [1, 1, 0, 0, 1]


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 20), st.integers(0, 20)), max_size=60))
def test_receipts_are_rate_bounded_monotonic_and_end_at_the_highest_mark(
    steps: list[tuple[int, int, int]],
) -> None:
    window = 0.05
    c = ReceiptCoalescer(window_s=window)
    now = 0.0
    sent: list[tuple[float, ReceiptDue]] = []
    best_d = best_r = 0
    for gap, delivered, read in steps:
        now += gap * 0.02
        sent += [(now, d) for d in c.flush(now)[0]]
        sent += [(now, d) for d in c.offer(CONV, 1, now, delivered=delivered, read=read)]
        best_d, best_r = max(best_d, delivered), max(best_r, read)
    while (due_at := c.next_due()) is not None:
        sent += [(due_at, d) for d in c.flush(due_at)[0]]
    times = [t for t, _ in sent]
    assert all(b - a >= window - 1e-9 for a, b in itertools.pairwise(times))
    ds = [d.delivered for _, d in sent if d.delivered is not None]
    rs = [d.read for _, d in sent if d.read is not None]
    assert ds == sorted(set(ds)) and rs == sorted(set(rs))  # strictly advancing
    assert (ds[-1] if ds else 0) == best_d and (rs[-1] if rs else 0) == best_r
