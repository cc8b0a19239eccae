"""Prometheus metrics of one node, in a registry of its own so several nodes can live in one test process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CONTENT_TYPE_LATEST as PROMETHEUS_CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["PROMETHEUS_CONTENT_TYPE", "Metrics"]

# 0.25 ms .. 10 s: push latency targets are < 100 ms, history p99 < 50 ms.
_LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
)  # fmt: skip


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
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
        self.bus_publish_failures = Counter(
            "wsim_bus_publish_failures", "Bus frames the broker did not take (their nodes resync)", registry=r
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

    @contextmanager
    def store_op(self, store: str, op: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.store_seconds.labels(store, op).observe(time.perf_counter() - start)

    def render(self) -> bytes:
        return generate_latest(self.registry)
