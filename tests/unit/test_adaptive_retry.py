"""The adaptive (round-trip) retry policy and the tracker's inbound-waiting extension, on fake time."""

from __future__ import annotations

import pytest

from strategies.ack.tracking import Resend, RetryingTracker
from strategies.retry import REGISTRY
from strategies.retry.policies import RttRetry
from tests.support import policies


def test_registered_by_name() -> None:
    assert "adaptive" in REGISTRY.names()


def test_rto_follows_rfc6298_with_a_floor() -> None:
    d = policies.adaptive().for_device()
    assert isinstance(d, RttRetry)
    assert d.wait_s(0) == 1.0  # initial RTO before any sample
    d.observe_rtt(2.0)  # first sample: srtt = 2, rttvar = 1 -> RTO = 6
    assert d.srtt == 2.0 and d.rttvar == 1.0
    assert d.wait_s(0) == pytest.approx(6.0)
    assert [d.wait_s(a) for a in range(3)] == pytest.approx([6.0, 12.0, 24.0])
    d.observe_rtt(2.0)  # rttvar = 0.75, srtt = 2 -> RTO = 5
    assert d.wait_s(0) == pytest.approx(5.0)
    for _ in range(100):  # a fast, steady link: the RTO falls to the 1 s floor, never below
        d.observe_rtt(0.001)
    assert d.wait_s(0) == 1.0


def test_each_device_learns_its_own_round_trip() -> None:
    policy = policies.adaptive()
    a, b = policy.for_device(), policy.for_device()
    a.observe_rtt(3.0)
    assert a.wait_s(0) == pytest.approx(9.0) and b.wait_s(0) == 1.0


def test_a_busy_connections_late_ack_is_not_pushed_again() -> None:
    """A closed loop whose round trip is 1.6 s (queueing): the fixed 1 s schedule pushes every message again, the
    adaptive one learns the round trip after the first ack and stops."""
    for policy, expected_resends in ((policies.exponential(), 20), (policies.adaptive(), 1)):
        t = RetryingTracker(policy)
        resends = 0
        now = 0.0
        for seq in range(1, 21):
            t.track(seq, "c", seq, "f", now)
            ack_at = now + 1.6
            for ev in t.due(ack_at - 1e-9):
                resends += isinstance(ev, Resend)
            t.ack("c", seq, ack_at)
            now = ack_at
        assert resends == expected_resends, policy


def test_karn_no_sample_from_a_retried_push() -> None:
    policy = policies.adaptive()
    t = RetryingTracker(policy)
    t.track(1, "c", 1, "f", 0.0)
    assert [type(e) for e in t.due(1.0)] == [Resend]
    t.ack("c", 1, 30.0)  # ambiguous: the ack may answer either push, so no 30 s sample
    t.track(2, "c", 2, "f", 30.0)
    assert t.next_deadline() == 32.0  # the timeout's backed-off RTO (2 s), kept until a valid sample
    t.ack("c", 2, 30.5)  # a valid sample: srtt 0.5, rttvar 0.25 -> RTO 1.5
    t.track(3, "c", 3, "f", 31.0)
    assert t.next_deadline() == pytest.approx(32.5)


def test_cumulative_ack_samples_its_oldest_push() -> None:
    t = RetryingTracker(policies.adaptive())
    t.track(1, "c", 1, "f", 0.0)
    t.track(2, "c", 2, "f", 0.5)
    assert t.ack("c", 2, 2.0) == 2  # samples 2.0 and 1.5: the oldest (2.0) -> RTO 6
    t.track(3, "c", 3, "f", 2.0)
    assert t.next_deadline() == pytest.approx(8.0)


def test_settle_gives_a_sample_too() -> None:
    t = RetryingTracker(policies.adaptive())
    t.track(1, "c", 1, "f", 0.0)
    assert t.settle("c", 1, 2.0)
    t.track(2, "c", 2, "f", 2.0)
    assert t.next_deadline() == pytest.approx(8.0)


def test_due_push_waits_once_more_while_inbound_frames_wait() -> None:
    t = RetryingTracker(policies.exponential())
    t.track(1, "c", 1, "f", 0.0)
    assert t.due(1.0, inbound_waiting=True) == []  # extended by the same wait
    assert t.next_deadline() == 2.0
    assert t.ack("c", 1, 1.2) == 1  # the ack was among the waiting frames: no push again
    assert t.pending_count() == 0

    t.track(2, "c", 2, "f", 10.0)
    assert t.due(11.0, inbound_waiting=True) == []
    # only once per attempt: a device that keeps sending but never acks is still retried
    assert [type(e) for e in t.due(12.0, inbound_waiting=True)] == [Resend]
    assert t.next_deadline() == 14.0  # attempt 1 waits 2 s
    assert t.due(14.0, inbound_waiting=True) == []
    assert [type(e) for e in t.due(16.0)] == [Resend]
