"""Metrics of one node, exported in the Prometheus text format, in a registry of its own so several nodes can
live in one test process.

The hot path updates these many times per message, so they are plain Python objects: prometheus-client's own
Counter takes a lock and re-checks its labels on every ``inc`` (measured: about 12 % of the server's CPU per
message under cProfile). Here a labelled child is looked up once per label set and cached, an increment is an
addition, and the registry reads the values only when /metrics is scraped. They are updated from the event loop's
thread only (the server's one thread that handles frames); nothing else writes them.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import os
import resource
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Generic, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST as PROMETHEUS_CONTENT_TYPE
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

__all__ = ["PROMETHEUS_CONTENT_TYPE", "Metrics"]

# 0.25 ms .. 10 s: push latency targets are < 100 ms, history p99 < 50 ms.
_LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
)  # fmt: skip


class _Value:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = value

    def get(self) -> float:
        return self.value


class _Buckets:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    @contextmanager
    def time(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observe(time.perf_counter() - start)


C = TypeVar("C", _Value, _Buckets)


class _Family(Generic[C]):
    def __init__(
        self, name: str, doc: str, labelnames: Sequence[str] = (), *, registry: CollectorRegistry
    ) -> None:
        self.name = name
        self.doc = doc
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], C] = {}
        # The same child by the label values as given (frame type, error code, ...): a hot path asks with the
        # same values every time, and building the str key per call was 3 % of the loop under 1:1 load. Values
        # equal in Python (ErrorCode.X and "x") share a child, as their str keys do.
        self._given: dict[tuple[object, ...], C] = {}
        self._unlabelled: C | None = None if self.labelnames else self._new()
        registry.register(self)  # type: ignore[arg-type]

    def _new(self) -> C:
        raise NotImplementedError  # pragma: no cover - the three subclasses define it

    def labels(self, *values: object) -> C:
        child = self._given.get(values)
        if child is not None:
            return child
        key = tuple(map(str, values))
        child = self._children.get(key)
        if child is None:
            if len(key) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}, got {key}")
            child = self._children[key] = self._new()
        self._given[values] = child
        return child

    def _series(self) -> Iterable[tuple[list[str], C]]:
        if self._unlabelled is not None:
            yield [], self._unlabelled
        for key, child in list(self._children.items()):
            yield list(key), child

    def children(self) -> dict[tuple[str, ...], C]:
        return dict(self._children)

    def describe(self) -> list[Metric]:
        return []


class Counter(_Family[_Value]):
    def _new(self) -> _Value:
        return _Value()

    def inc(self, amount: float = 1.0) -> None:
        assert self._unlabelled is not None, f"{self.name} needs labels"
        self._unlabelled.value += amount

    def value(self, *labels: object) -> float:
        child = self._unlabelled if not labels else self._children.get(tuple(str(v) for v in labels))
        return 0.0 if child is None else child.value

    def collect(self) -> list[Metric]:
        fam = CounterMetricFamily(self.name, self.doc, labels=self.labelnames)
        for labels, child in self._series():
            fam.add_metric(labels, child.value)
        return [fam]


class Gauge(Counter):
    def set(self, value: float) -> None:
        assert self._unlabelled is not None, f"{self.name} needs labels"
        self._unlabelled.value = value

    def collect(self) -> list[Metric]:
        fam = GaugeMetricFamily(self.name, self.doc, labels=self.labelnames)
        for labels, child in self._series():
            fam.add_metric(labels, child.value)
        return [fam]


class Histogram(_Family[_Buckets]):
    def __init__(
        self,
        name: str,
        doc: str,
        labelnames: Sequence[str] = (),
        *,
        registry: CollectorRegistry,
        buckets: Sequence[float] = _LATENCY_BUCKETS,
    ) -> None:
        self._bounds = tuple(float(b) for b in buckets)
        super().__init__(name, doc, labelnames, registry=registry)

    def _new(self) -> _Buckets:
        return _Buckets(self._bounds)

    def observe(self, value: float) -> None:
        assert self._unlabelled is not None, f"{self.name} needs labels"
        self._unlabelled.observe(value)

    def collect(self) -> list[Metric]:
        fam = HistogramMetricFamily(self.name, self.doc, labels=self.labelnames)
        for labels, child in self._series():
            cumulative, buckets = 0, []
            for bound, count in zip([*self._bounds, math.inf], child.counts, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == math.inf else repr(bound), cumulative))
            fam.add_metric(labels, buckets, child.sum)
        return [fam]


class RuntimeCollector:
    """The process's resident memory, open file descriptors and asyncio tasks, read at scrape time: the fault
    campaign checks that each is back near its baseline once the faults heal (leaks show up here first)."""

    def collect(self) -> list[Metric]:
        rss = GaugeMetricFamily("wsim_process_resident_bytes", "Resident memory of the node process")
        rss.add_metric([], _resident_bytes())
        fds = GaugeMetricFamily("wsim_process_open_fds", "Open file descriptors of the node process")
        fds.add_metric([], _open_fds())
        tasks = GaugeMetricFamily("wsim_asyncio_tasks", "Live asyncio tasks of the node's event loop")
        try:
            tasks.add_metric([], len(asyncio.all_tasks()))
        except RuntimeError:  # scraped outside the loop (tests): no loop, no tasks
            tasks.add_metric([], 0)
        return [rss, fds, tasks]


def _resident_bytes() -> float:
    try:
        pages = int(Path("/proc/self/statm").read_text(encoding="ascii").split()[1])
        return float(pages * os.sysconf("SC_PAGE_SIZE"))
    except OSError:  # not Linux: the peak is the best portable figure
        return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def _open_fds() -> float:
    try:
        return float(sum(1 for _ in Path("/proc/self/fd").iterdir()))
    except OSError:
        return math.nan


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=False)
        r.register(RuntimeCollector())
        self.connections = Gauge("wsim_connections", "Open device connections", ["transport"], registry=r)
        self.connections_opened = Counter(
            "wsim_connections_opened", "Device connections authenticated", ["transport"], registry=r
        )
        self.connections_closed = Counter(
            "wsim_connections_closed", "Device connections closed, by close code", ["code"], registry=r
        )
        self.frames_in = Counter("wsim_frames_in", "Frames received, by type", ["type"], registry=r)
        self.frames_out = Counter("wsim_frames_out", "Frames written to devices", registry=r)
        self.errors = Counter("wsim_errors", "Errors reported to clients, by code", ["code"], registry=r)
        self.acks = Counter(
            "wsim_acks", "Acknowledgements, by state (sent/delivered/read)", ["state"], registry=r
        )
        self.messages_stored = Counter("wsim_messages_stored", "Messages durably stored", registry=r)
        self.dedup_hits = Counter("wsim_dedup_hits", "Resends answered with the original ack", registry=r)
        self.send_ack_seconds = Histogram(
            "wsim_send_ack_seconds",
            "message.send received -> sent ack written",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.send_deliver_seconds = Histogram(
            "wsim_send_deliver_seconds",
            "message timestamp (stored) -> frame written to a recipient device",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.retries = Counter("wsim_delivery_retries", "Deliveries resent for lack of an ack", registry=r)
        self.dead_letters = Counter(
            "wsim_dead_letters", "Deliveries given up after the last retry", registry=r
        )
        self.cache_hits = Counter("wsim_cache_hits", "Cache hits", ["tier", "name"], registry=r)
        self.cache_misses = Counter("wsim_cache_misses", "Cache misses", ["tier", "name"], registry=r)
        self.cache_evictions = Counter(
            "wsim_cache_evictions", "Cache evictions", ["tier", "name"], registry=r
        )
        self.store_seconds = Histogram(
            "wsim_store_op_seconds",
            "Store operation latency",
            ["store", "op"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.replica_fallbacks = Counter(
            "wsim_store_replica_fallbacks",
            "Replica-routed reads served by the primary instead, by store and reason "
            "(detached, breaker_open, lagging, lag_unknown, timeout, error)",
            ["store", "reason"],
            registry=r,
        )
        self.replica_lag = Gauge(
            "wsim_store_replica_lag_seconds",
            "Replica lag measured from the heartbeat row (-1: unknown; the replica is not attached or not answering)",
            ["store"],
            registry=r,
        )
        self.replica_up = Gauge(
            "wsim_store_replica_up",
            "1 while replica reads are allowed (attached, breaker closed)",
            ["store"],
            registry=r,
        )
        self.store_batch_size = Histogram(
            "wsim_store_batch_size",
            "Writes committed per transaction (group commit)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=r,
        )
        self.bus_published = Counter("wsim_bus_published", "Envelopes published on the bus", registry=r)
        self.bus_received = Counter("wsim_bus_received", "Envelopes received from the bus", registry=r)
        self.bus_gaps = Counter(
            "wsim_bus_gaps",
            "Bus gaps reported to the node (its devices resync), by bus and cause",
            ["bus", "cause"],
            registry=r,
        )
        self.bus_duplicates = Counter(
            "wsim_bus_duplicates", "Bus frames dropped as redeliveries of a frame already handled", registry=r
        )
        self.bus_rejected = Counter(
            "wsim_bus_rejected",
            "Bus frames dropped as forged or edited (mac), malformed (format) or addressed elsewhere (stream)",
            ["bus", "reason"],
            registry=r,
        )
        self.bus_publish_failures = Counter(
            "wsim_bus_publish_failures", "Bus frames the broker did not take (their nodes resync)", registry=r
        )
        self.sweep_resyncs = Counter(
            "wsim_sweep_resyncs",
            "Devices told to sync by the anti-entropy sweeper (their conversations' heads were ahead)",
            registry=r,
        )
        self.presence_expired = Counter(
            "wsim_presence_expired",
            "Device entries removed because their node's lease ran out (dead or partitioned node)",
            registry=r,
        )
        self.transport_requests = Counter(
            "wsim_transport_requests",
            "Requests that carry no socket (HTTP polls, MQTT uplinks), by transport",
            ["transport"],
            registry=r,
        )
        self.transport_empty_responses = Counter(
            "wsim_transport_empty_responses",
            "Poll responses without any frame, by transport",
            ["transport"],
            registry=r,
        )
        self.transport_refused = Counter(
            "wsim_transport_refused",
            "Uplinks refused because they cannot be attributed, by transport and reason",
            ["transport", "reason"],
            registry=r,
        )
        self.history_seconds = Histogram(
            "wsim_history_query_seconds",
            "History page query latency (REST and sync)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        # Garbage-collector pauses stop the event loop: at 10k connections they were the latency tail.
        self.gc_pause_seconds = Histogram(
            "wsim_gc_pause_seconds",
            "Cyclic garbage collector pauses, by generation",
            ["generation"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.gc_pause_cpu_seconds = Histogram(
            "wsim_gc_pause_cpu_seconds",
            "CPU time of the collecting thread during each collector pause, by generation (wall time minus this: "
            "the thread descheduled mid-collection)",
            ["generation"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        # The histogram's buckets bound a pause only to within a bucket; the benchmark reports the longest one.
        self.gc_pause_max_seconds = Gauge(
            "wsim_gc_pause_max_seconds",
            "Longest cyclic garbage collector pause since the node started, by generation",
            ["generation"],
            registry=r,
        )

        # A count of freezes, not the permanent generation's size: counting it walks every frozen object (16 ms at
        # 2 million), a stall at each freeze (core/gcpolicy.py).
        self.gc_freezes = Counter(
            "wsim_gc_freezes",
            "Freezes of the collector's heap after start-up (core/gcpolicy.py: connections opened, generation 1 due)",
            registry=r,
        )

    @contextmanager
    def store_op(self, store: str, op: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.store_seconds.labels(store, op).observe(time.perf_counter() - start)

    def render(self) -> bytes:
        return generate_latest(self.registry)
