"""Delivery retry policy: how long to wait for a device's ack after each push, and how many pushes to try.

Pure (STYLE.md principle 2): it returns delays; only the driver sleeps. After attempt ``max_retries`` has waited
``wait_s(max_retries)`` without an ack, the delivery is dead-lettered. Whatever the policy, the message itself is
never lost: it is in the durable store and reaches the device on its next sync. Retries only repair losses on a
connection that is still open (a dropped frame, a lost ack); they may cause duplicate pushes, which devices drop by
message id.
"""

from __future__ import annotations

from typing import Protocol


class RetryPolicy(Protocol):
    @property
    def max_retries(self) -> int:
        """Pushes after the first one before giving up."""
        ...

    def wait_s(self, attempt: int) -> float:
        """Seconds to wait for an ack after push number ``attempt`` (0 = the first push)."""
        ...
