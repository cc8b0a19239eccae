"""The three retry policies of the plan's comparison: none, fixed interval, exponential backoff (1 s, 2 s, 4 s)."""

from __future__ import annotations

from typing import Any

from strategies.retry.config import ExponentialRetryConfig, FixedRetryConfig, NoRetryConfig


class NoRetry:
    """One push; if no ack within ``ack_timeout_s``, dead-letter at once."""

    def __init__(self, config: NoRetryConfig, *_: Any) -> None:
        self._timeout = config.ack_timeout_s

    @property
    def max_retries(self) -> int:
        return 0

    def wait_s(self, attempt: int) -> float:
        return self._timeout


class FixedRetry:
    """Pushes again every ``interval_s``, ``max_retries`` times."""

    def __init__(self, config: FixedRetryConfig, *_: Any) -> None:
        self._interval = config.interval_s
        self._max = config.max_retries

    @property
    def max_retries(self) -> int:
        return self._max

    def wait_s(self, attempt: int) -> float:
        return self._interval


class ExponentialRetry:
    """Waits base * factor**attempt (default 1 s, 2 s, 4 s, then 8 s for the last push's ack), capped."""

    def __init__(self, config: ExponentialRetryConfig, *_: Any) -> None:
        self._base = config.base_s
        self._factor = config.factor
        self._max = config.max_retries
        self._cap = config.cap_s

    @property
    def max_retries(self) -> int:
        return self._max

    def wait_s(self, attempt: int) -> float:
        return float(min(self._cap, self._base * self._factor**attempt))
