"""The replica's health bookkeeping (strategies/store/mysql/db.py ``Replica``): when a replica read may go to the
replica, and the circuit breaker's open / half-open / closed cycle. Pure: times are passed in."""

from __future__ import annotations

from typing import Any

from strategies.store.config import MysqlStoreConfig
from strategies.store.mysql.db import Replica


def healthy(**opts: Any) -> Replica:
    cfg = MysqlStoreConfig(
        replica_dsn="mysql://r@db2/wsim", replica_breaker_failures=3, replica_breaker_open_s=5, **opts
    )
    r = Replica(cfg)
    r.pool = object()  # attached
    r.lag_s = 0.2
    return r


def test_reads_need_an_attached_replica_with_a_known_lag_within_the_bound() -> None:
    r = healthy(replica_max_lag_s=5)
    assert r.refusal(0.0) is None
    r.lag_s = None
    assert r.refusal(0.0) == "lag_unknown"
    r.lag_s = 5.5
    assert r.refusal(0.0) == "lagging"
    r.pool = None
    assert r.refusal(0.0) == "detached"


def test_breaker_opens_after_consecutive_failures_and_a_failed_probe_reopens_it() -> None:
    r = healthy()
    r.failed(10.0)
    r.failed(10.1)
    r.succeeded()  # a success in between: the count starts again
    r.failed(10.2)
    r.failed(10.3)
    assert r.refusal(10.3) is None
    r.failed(10.4)  # third in a row
    assert r.refusal(10.5) == "breaker_open" and r.refusal(15.3) == "breaker_open"
    assert r.refusal(15.4) is None  # half-open: the next read probes
    r.failed(15.5)  # the probe fails: open again at once
    assert r.refusal(15.6) == "breaker_open"
    assert r.refusal(20.5) is None
    r.succeeded()  # the probe succeeds: closed, and it takes three failures again
    r.failed(21.0)
    r.failed(21.1)
    assert r.refusal(21.2) is None
