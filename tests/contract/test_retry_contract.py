"""Every registered retry policy, on fake time: positive waits that never shrink with the attempt, a per-device
schedule, and a tracker that pushes exactly ``max_retries`` more times and then dead-letters."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter

from strategies.ack.tracking import GiveUp, Resend, RetryingTracker
from strategies.retry import REGISTRY
from strategies.retry.base import RetryPolicy
from strategies.retry.config import RetryConfig


def make(name: str) -> RetryPolicy:
    config = TypeAdapter(RetryConfig).validate_python({"kind": name})
    cls: type = REGISTRY.load(
        name
    )  # the registry's loaded class takes its config (and a context, unused here)
    policy: RetryPolicy = cls(config)
    return policy


@pytest.mark.parametrize("name", REGISTRY.names())
def test_waits_are_positive_and_never_shrink(name: str) -> None:
    device = make(name).for_device()
    for sample in (None, 0.05, 3.0):
        if sample is not None:
            device.observe_rtt(sample)
        waits = [device.wait_s(a) for a in range(device.max_retries + 1)]
        assert all(w > 0 for w in waits)
        assert waits == sorted(waits)


@pytest.mark.parametrize("name", REGISTRY.names())
def test_tracker_retries_max_retries_times_then_gives_up(name: str) -> None:
    policy = make(name)
    t = RetryingTracker(policy)
    t.track(1, "c", 1, "frame", 0.0)
    kinds = []
    while t.pending_count():
        deadline = t.next_deadline()
        assert deadline is not None
        kinds += [type(e) for e in t.due(deadline)]
    assert kinds == [Resend] * policy.max_retries + [GiveUp]
