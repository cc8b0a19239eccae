"""The retry policies of the plan's comparison (none, fixed interval, exponential backoff 1 s, 2 s, 4 s) and an
adaptive one whose ack deadline follows each device's measured round trip."""

from __future__ import annotations

from strategies.context import StrategyContext
from strategies.retry.config import (
    AdaptiveRetryConfig,
    ExponentialRetryConfig,
    FixedRetryConfig,
    NoRetryConfig,
)


class _Stateless:
    """Fixed schedules: one object serves every device; round-trip samples are ignored."""

    def for_device(self) -> _Stateless:
        return self

    def observe_rtt(self, sample_s: float) -> None:
        return None

    def observe_timeout(self) -> None:
        return None


class NoRetry(_Stateless):
    """One push; if no ack within ``ack_timeout_s``, dead-letter at once."""

    def __init__(self, config: NoRetryConfig, ctx: StrategyContext) -> None:
        del ctx
        self.max_retries = 0
        self._timeout = config.ack_timeout_s

    def wait_s(self, attempt: int) -> float:
        return self._timeout


class FixedRetry(_Stateless):
    """Pushes again every ``interval_s``, ``max_retries`` times."""

    def __init__(self, config: FixedRetryConfig, ctx: StrategyContext) -> None:
        del ctx
        self.max_retries = config.max_retries
        self._interval = config.interval_s

    def wait_s(self, attempt: int) -> float:
        return self._interval


class ExponentialRetry(_Stateless):
    """Waits base * factor**attempt (default 1 s, 2 s, 4 s, then 8 s for the last push's ack), capped."""

    def __init__(self, config: ExponentialRetryConfig, ctx: StrategyContext) -> None:
        del ctx
        self.max_retries = config.max_retries
        self._base = config.base_s
        self._factor = config.factor
        self._cap = config.cap_s

    def wait_s(self, attempt: int) -> float:
        return float(min(self._cap, self._base * self._factor**attempt))


class AdaptiveRetry:
    """Ack deadline from the measured round trip, as TCP's retransmission timer (RFC 6298).

    Per device: the first sample R sets srtt = R, rttvar = R/2; later ones rttvar = 3/4 rttvar + 1/4 |srtt - R|,
    srtt = 7/8 srtt + 1/8 R. The wait after push ``attempt`` is RTO * factor**attempt with RTO = srtt + 4 rttvar,
    at least ``floor_s`` and at most ``cap_s``; ``initial_s`` before the first sample. A timeout doubles the RTO
    for later pushes too until a fresh sample (RFC 6298 5.5; with Karn's rule a link whose every push times out
    would otherwise never get a sample). A busy server's round trip
    (queueing included) thus stretches the deadline, and a healthy connection under load is not pushed again
    merely because its ack is late; a lost frame is still repaired after about one RTO. After ``max_retries``
    the delivery is dead-lettered, as with the fixed schedules.
    """

    def __init__(self, config: AdaptiveRetryConfig, ctx: StrategyContext) -> None:
        del ctx
        self.max_retries = config.max_retries
        self._config = config

    def wait_s(self, attempt: int) -> float:
        c = self._config
        return float(min(c.cap_s, max(c.floor_s, c.initial_s) * c.factor**attempt))

    def observe_rtt(self, sample_s: float) -> None:
        return None  # the shared object learns nothing: each device has its own RttRetry

    def observe_timeout(self) -> None:
        return None

    def for_device(self) -> RttRetry:
        return RttRetry(self._config)


class RttRetry:
    """One device's round-trip estimate and the retry schedule derived from it (see :class:`AdaptiveRetry`)."""

    __slots__ = ("_cap", "_factor", "_floor", "_rto", "max_retries", "rttvar", "srtt")

    def __init__(self, config: AdaptiveRetryConfig) -> None:
        self._floor = config.floor_s
        self._cap = config.cap_s
        self._factor = config.factor
        self.max_retries = config.max_retries
        self._rto = min(self._cap, max(self._floor, config.initial_s))
        self.srtt: float | None = None
        self.rttvar = 0.0

    def wait_s(self, attempt: int) -> float:
        return float(min(self._cap, self._rto * self._factor**attempt))

    def observe_rtt(self, sample_s: float) -> None:
        r = max(0.0, sample_s)
        if self.srtt is None:
            self.srtt = r
            self.rttvar = r / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - r)
            self.srtt = 0.875 * self.srtt + 0.125 * r
        self._rto = min(self._cap, max(self._floor, self.srtt + 4 * self.rttvar))

    def observe_timeout(self) -> None:
        self._rto = min(self._cap, self._rto * self._factor)
