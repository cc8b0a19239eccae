from __future__ import annotations

from strategies.ack.tracking import GiveUp, NullTracker, Resend, RetryingTracker
from tests.support import policies


def test_exponential_policy_waits_1_2_4_then_8() -> None:
    p = policies.exponential()
    assert p.max_retries == 3
    assert [p.wait_s(a) for a in range(4)] == [1.0, 2.0, 4.0, 8.0]


def test_fixed_and_none_policies() -> None:
    f = policies.fixed(interval=2.0, retries=3)
    assert f.max_retries == 3 and f.wait_s(0) == f.wait_s(3) == 2.0
    n = policies.none(timeout=5.0)
    assert n.max_retries == 0 and n.wait_s(0) == 5.0


def test_retries_on_schedule_then_gives_up() -> None:
    t = RetryingTracker(policies.exponential())
    t.track(1, "d:1:2", 5, "frame", now=0.0)
    assert t.next_deadline() == 1.0
    assert t.due(0.99) == []
    times, events = [], []
    now = 0.0
    while t.pending_count():
        dl = t.next_deadline()
        assert dl is not None
        now = dl
        evs = t.due(now)
        times.append(now)
        events.extend(type(e).__name__ for e in evs)
    # pushes again at 1 s, 3 s, 7 s after the first push; dead letter at 15 s
    assert times == [1.0, 3.0, 7.0, 15.0]
    assert events == ["Resend", "Resend", "Resend", "GiveUp"]


def test_cumulative_ack_settles_everything_up_to_seq() -> None:
    t = RetryingTracker(policies.exponential())
    for seq in (1, 2, 3, 4):
        t.track(seq, "g:9", seq, f"f{seq}", now=0.0)
    t.track(10, "d:1:2", 1, "other", now=0.0)
    assert t.ack("g:9", 3) == 3
    assert t.pending_count() == 2
    evs = t.due(1.0)
    assert sorted(e.pending.msg_id for e in evs if isinstance(e, Resend)) == [4, 10]
    assert t.ack("g:9", 100) == 1
    assert t.ack("nope", 1) == 0


def test_duplicate_track_keeps_first_schedule() -> None:
    t = RetryingTracker(policies.fixed(interval=2.0))
    t.track(1, "c", 1, "f", now=0.0)
    t.track(1, "c", 1, "f", now=1.5)
    assert t.pending_count() == 1 and t.next_deadline() == 2.0


def test_max_pending_gives_up_oldest_immediately() -> None:
    t = RetryingTracker(policies.exponential(), max_pending=2)
    for i in range(3):
        t.track(i, "c", i + 1, "f", now=float(i))
    assert t.pending_count() == 2
    assert t.next_deadline() == float("-inf")
    evs = t.due(3.0)
    give_ups = [e.pending.msg_id for e in evs if isinstance(e, GiveUp)]
    assert give_ups == [0]


def test_null_tracker_tracks_nothing() -> None:
    t = NullTracker()
    t.track(1, "c", 1, "f", 0.0)
    assert t.pending_count() == 0 and t.next_deadline() is None and t.due(100.0) == [] and t.ack("c", 1) == 0
