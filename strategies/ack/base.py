"""Acknowledgement policy: which of the three states (sent, delivered, read) the protocol confirms.

``three_state``: the sender gets ``message.sent`` only after the durable write; each pushed message is tracked
until the device acks it (retried per the retry policy, then dead-lettered); delivered and read marks are
forwarded to the other members as receipts. At-least-once push, exactly-once display (devices drop duplicate ids).

``off``: fire and forget. No ``message.sent`` (a client cannot know its message arrived, so it never resends), no
tracking or retry of pushes, no receipts. A message lost in flight in either direction stays lost until the device
happens to sync. This is the control arm of the plan's "ACK on vs off" experiment, not a mode for users.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from core.protocol.delivery import DeliveryTracker
    from strategies.retry.base import RetryPolicy


class AckPolicy(Protocol):
    @property
    def name(self) -> str:
        """Told to clients in ``auth.ok`` so they know whether to wait for acks."""
        ...

    def sent_ack(self, frame: str) -> Sequence[str]:
        """Given the encoded ``message.sent`` frame of a stored message, the frames to push to its sender (none
        when acks are off). Frames are passed encoded: the policy decides whether they go out, not what they say."""
        ...

    def receipts(self, frame: str) -> Sequence[str]:
        """Given an encoded ``receipt`` frame for a delivered/read mark, the frames to forward to the members."""
        ...

    def new_tracker(self, retry: RetryPolicy, max_pending: int) -> DeliveryTracker:
        """Per-connection delivery tracker."""
        ...
