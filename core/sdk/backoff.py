"""Reconnect delays for every client (SDK, swarm, Locust user): exponential backoff with full jitter.

Full jitter (a uniform draw between 0 and the capped exponential) spreads a crowd of devices that lost the same
node over the whole window instead of sending them back in waves (AWS Architecture Blog, "Exponential Backoff
And Jitter", 2015). ``rand`` is injectable so drivers keep their own seeded generator and tests are exact.
"""

from __future__ import annotations

import random
from collections.abc import Callable


def full_jitter(
    attempt: int, base_s: float, cap_s: float, rand: Callable[[], float] = random.random
) -> float:
    """Delay before reconnect number ``attempt`` (0 for the first): uniform in [0, min(cap, base * 2**attempt))."""
    return rand() * min(cap_s, base_s * 2.0 ** min(attempt, 62))
