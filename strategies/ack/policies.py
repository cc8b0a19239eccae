from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from strategies.ack.base import DeliveryTracker
from strategies.ack.tracking import NullTracker, RetryingTracker
from strategies.retry.base import RetryPolicy


class ThreeStateAck:
    """Sent after the durable write, delivered per device ack (tracked and retried), read per user mark."""

    def __init__(self, *_: Any) -> None:
        pass

    @property
    def name(self) -> str:
        return "three_state"

    def sent_ack(self, frame: str) -> Sequence[str]:
        return (frame,)

    def receipts(self, frame: str) -> Sequence[str]:
        return (frame,)

    def new_tracker(self, retry: RetryPolicy, max_pending: int) -> DeliveryTracker:
        return RetryingTracker(retry, max_pending)


class AckOff:
    """No acknowledgements at all: at-most-once in both directions (see the module docstring of ``base``)."""

    def __init__(self, *_: Any) -> None:
        pass

    @property
    def name(self) -> str:
        return "off"

    def sent_ack(self, frame: str) -> Sequence[str]:
        return ()

    def receipts(self, frame: str) -> Sequence[str]:
        return ()

    def new_tracker(self, retry: RetryPolicy, max_pending: int) -> DeliveryTracker:
        return NullTracker()
