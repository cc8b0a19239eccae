from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from strategies._registry import StrategyConfig


class NoRetryConfig(StrategyConfig, implementation="strategies.retry.policies:NoRetry"):
    """One push; dead-lettered after ``ack_timeout_s`` without an ack."""

    kind: Literal["none"] = "none"
    ack_timeout_s: Annotated[float, Field(gt=0)] = 5.0


class FixedRetryConfig(StrategyConfig, implementation="strategies.retry.policies:FixedRetry"):
    """Up to ``max_retries`` more pushes, ``interval_s`` apart."""

    kind: Literal["fixed"] = "fixed"
    interval_s: Annotated[float, Field(gt=0)] = 2.0
    max_retries: Annotated[int, Field(ge=0, le=100)] = 3


class ExponentialRetryConfig(StrategyConfig, implementation="strategies.retry.policies:ExponentialRetry"):
    """Waits of ``base_s * factor**attempt`` up to ``cap_s`` (the plan's 1 s, 2 s, 4 s)."""

    kind: Literal["exponential"] = "exponential"
    base_s: Annotated[float, Field(gt=0)] = 1.0
    factor: Annotated[float, Field(ge=1)] = 2.0
    max_retries: Annotated[int, Field(ge=0, le=100)] = 3
    cap_s: Annotated[float, Field(gt=0)] = 60.0


class AdaptiveRetryConfig(StrategyConfig, implementation="strategies.retry.policies:AdaptiveRetry"):
    """Ack deadline from each device's measured round trip: RTO = srtt + 4 rttvar (RFC 6298), then backoff."""

    kind: Literal["adaptive"] = "adaptive"
    initial_s: Annotated[float, Field(gt=0)] = 1.0  # RTO before the first round-trip sample
    floor_s: Annotated[float, Field(gt=0)] = 1.0  # RFC 6298's minimum RTO
    factor: Annotated[float, Field(ge=1)] = 2.0  # backoff of the RTO for each further push
    max_retries: Annotated[int, Field(ge=0, le=100)] = 3
    cap_s: Annotated[float, Field(gt=0)] = 60.0


RetryConfig = Annotated[
    NoRetryConfig | FixedRetryConfig | ExponentialRetryConfig | AdaptiveRetryConfig,
    Field(discriminator="kind"),
]
