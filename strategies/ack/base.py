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
    from core.protocol.frames import MessageSent, Receipt
    from strategies.retry.base import RetryPolicy


class AckPolicy(Protocol):
    @property
    def name(self) -> str:
        """Told to clients in ``auth.ok`` so they know whether to wait for acks."""
        ...

    def sent_ack(self, ack: MessageSent) -> Sequence[MessageSent]:
        """Frames that confirm a stored message to its sender (none when acks are off)."""
        ...

    def receipts(self, receipt: Receipt) -> Sequence[Receipt]:
        """Receipts to forward to the other members for a delivered/read mark."""
        ...

    def new_tracker(self, retry: RetryPolicy, max_pending: int) -> DeliveryTracker:
        """Per-connection delivery tracker."""
        ...
