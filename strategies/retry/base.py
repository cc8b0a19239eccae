"""Delivery retry policy: how long to wait for a device's ack after each push, and how many pushes to try.

Pure (STYLE.md principle 2): it returns delays; only the driver sleeps. After attempt ``max_retries`` has waited
``wait_s(max_retries)`` without an ack, the delivery is dead-lettered. Whatever the policy, the message itself is
never lost: it is in the durable store and reaches the device on its next sync. Retries only repair losses on a
connection that is still open (a dropped frame, a lost ack); they may cause duplicate pushes, which devices drop by
message id.

A policy may keep per-device state (an adaptive policy learns each device's round trip): the tracker of each
device asks :meth:`RetryPolicy.for_device` once for its own :class:`DeviceRetry` and reports ack round trips to
it. Fixed schedules return themselves and ignore the samples.
"""

from __future__ import annotations

from typing import Protocol


class DeviceRetry(Protocol):
    """The retry schedule of one device."""

    @property
    def max_retries(self) -> int:
        """Pushes after the first one before giving up."""
        ...

    def wait_s(self, attempt: int) -> float:
        """Seconds to wait for an ack after push number ``attempt`` (0 = the first push)."""
        ...

    def observe_rtt(self, sample_s: float) -> None:
        """A push (never retried: Karn's rule) was acked ``sample_s`` seconds after it was written."""
        ...

    def observe_timeout(self) -> None:
        """A push timed out and is sent again (an adaptive schedule backs its timer off until the next sample)."""
        ...


class RetryPolicy(DeviceRetry, Protocol):
    def for_device(self) -> DeviceRetry:
        """The schedule for one newly connected device (``self`` when the policy keeps no per-device state)."""
        ...
