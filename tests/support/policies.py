from __future__ import annotations

from strategies.retry.config import (
    AdaptiveRetryConfig,
    ExponentialRetryConfig,
    FixedRetryConfig,
    NoRetryConfig,
)
from strategies.retry.policies import AdaptiveRetry, ExponentialRetry, FixedRetry, NoRetry
from tests.support.context import strategy_context

# Retry policies are pure: the context every strategy is built with is unused, so one serves every test.
CTX = strategy_context()


def exponential(base: float = 1.0, retries: int = 3) -> ExponentialRetry:
    return ExponentialRetry(ExponentialRetryConfig(base_s=base, max_retries=retries), CTX)


def fixed(interval: float = 2.0, retries: int = 3) -> FixedRetry:
    return FixedRetry(FixedRetryConfig(interval_s=interval, max_retries=retries), CTX)


def none(timeout: float = 5.0) -> NoRetry:
    return NoRetry(NoRetryConfig(ack_timeout_s=timeout), CTX)


def adaptive(floor: float = 1.0, initial: float = 1.0, retries: int = 3) -> AdaptiveRetry:
    return AdaptiveRetry(AdaptiveRetryConfig(floor_s=floor, initial_s=initial, max_retries=retries), CTX)
