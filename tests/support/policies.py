from __future__ import annotations

from strategies.retry.config import (
    AdaptiveRetryConfig,
    ExponentialRetryConfig,
    FixedRetryConfig,
    NoRetryConfig,
)
from strategies.retry.policies import AdaptiveRetry, ExponentialRetry, FixedRetry, NoRetry


def exponential(base: float = 1.0, retries: int = 3) -> ExponentialRetry:
    return ExponentialRetry(ExponentialRetryConfig(base_s=base, max_retries=retries))


def fixed(interval: float = 2.0, retries: int = 3) -> FixedRetry:
    return FixedRetry(FixedRetryConfig(interval_s=interval, max_retries=retries))


def none(timeout: float = 5.0) -> NoRetry:
    return NoRetry(NoRetryConfig(ack_timeout_s=timeout))


def adaptive(floor: float = 1.0, initial: float = 1.0, retries: int = 3) -> AdaptiveRetry:
    return AdaptiveRetry(AdaptiveRetryConfig(floor_s=floor, initial_s=initial, max_retries=retries))
