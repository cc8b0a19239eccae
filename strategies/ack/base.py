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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from strategies.retry.base import RetryPolicy


# The per-connection delivery tracker a policy makes (``new_tracker``); implementations in ``tracking.py``.


@dataclass(slots=True)
class Pending:
    msg_id: int
    conv: str
    seq: int
    frame: str  # the encoded message.new frame, resent as is
    attempt: int = 0
    deadline: float = 0.0
    done: bool = False
    sent_at: float = 0.0  # when push ``attempt`` was written
    wait: float = 0.0  # the wait of this attempt (deadline - sent_at, before any extension)
    extended: bool = False  # this attempt's deadline was already extended once (inbound frames were waiting)


@dataclass(frozen=True, slots=True)
class Resend:
    pending: Pending


@dataclass(frozen=True, slots=True)
class GiveUp:
    pending: Pending


TrackerEvent = Resend | GiveUp


class DeliveryTracker(Protocol):
    def track(self, msg_id: int, conv: str, seq: int, frame: str, now: float) -> None: ...

    def ack(self, conv: str, seq: int, now: float | None = None) -> int:
        """Cumulative ack; returns how many pending deliveries it settled. ``now`` gives a round-trip sample."""
        ...

    def settle(self, conv: str, seq: int, now: float | None = None) -> bool:
        """Settle exactly one pending delivery (transports whose devices acknowledge single messages: STOMP
        ``client-individual``); True if it was pending. The delivered mark still moves only by ``ack``."""
        ...

    def due(self, now: float, inbound_waiting: bool = False) -> list[TrackerEvent]:
        """What is due at ``now``. ``inbound_waiting``: the device's inbound frames wait unprocessed, so a due
        push is not resent yet but waits once more (its ack may be among those frames)."""
        ...

    def next_deadline(self) -> float | None: ...

    def pending_count(self) -> int: ...


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
