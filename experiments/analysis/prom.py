"""The server's ``/metrics`` (Prometheus text format), parsed with prometheus-client's own parser, and the few
computations the experiments need: counter deltas between two scrapes and histogram quantiles from bucket deltas
(linear interpolation inside a bucket, as PromQL's ``histogram_quantile`` does; accurate to the bucket width)."""

from __future__ import annotations

import math
from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape, keyed by (sample name, sorted labels)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """Counter increase between two scrapes; a restart (counter went down) counts from zero."""
    a, b = total(after, name, **labels), total(before, name, **labels)
    return a - b if a >= b else a


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (n, lab), v in samples.items():
        if n == name:
            key = dict(lab).get(label, "")
            out[key] = out.get(key, 0.0) + v
    return out


def histogram_buckets(samples: Samples, name: str, **labels: str) -> dict[float, float]:
    """Cumulative bucket counts of histogram ``name`` (``<name>_bucket``) whose labels include ``labels``, summed
    over the other labels."""
    out: dict[float, float] = {}
    want = set(labels.items())
    for (n, lab), v in samples.items():
        if n == f"{name}_bucket" and want <= set(lab):
            le = float(dict(lab)["le"])
            out[le] = out.get(le, 0.0) + v
    return dict(sorted(out.items()))


def bucket_delta(before: Samples, after: Samples, name: str) -> dict[float, float]:
    a, b = histogram_buckets(after, name), histogram_buckets(before, name)
    if any(a.get(le, 0.0) < v for le, v in b.items()):  # the node restarted: take the after scrape alone
        return a
    return {le: a[le] - b.get(le, 0.0) for le in a}


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Quantile ``q`` (0..1) of a cumulative bucket mapping {upper bound: count}; None if empty."""
    items = sorted(buckets.items())
    if not items or items[-1][1] <= 0:
        return None
    count = items[-1][1]
    rank = q * count
    prev_le, prev_c = 0.0, 0.0
    for le, c in items:
        if c >= rank:
            if math.isinf(le):
                return prev_le  # beyond the last finite bucket: its bound is all we know
            if c == prev_c:
                return le
            return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)
        prev_le, prev_c = le, c
    return prev_le


def histogram_summary(before: Samples, after: Samples, name: str) -> dict[str, float | None]:
    """n and p50/p90/p99 (in ms) of a seconds histogram between two scrapes."""
    buckets = bucket_delta(before, after, name)
    n = max(buckets.values()) if buckets else 0.0
    out: dict[str, float | None] = {"n": n}
    for q in (0.5, 0.9, 0.99):
        v = quantile(q, buckets)
        out[f"p{round(q * 100)}"] = None if v is None else v * 1000
    return out


def merged_deltas(befores: list[Samples], afters: list[Samples]) -> tuple[Samples, Samples]:
    """Several nodes as one: (empty, sum over nodes of each node's increase). A node whose counter went down
    (restarted) contributes its after value, as :func:`delta` does."""
    total: Samples = {}
    for b, a in zip(befores, afters, strict=True):
        for key, value in a.items():
            inc = value - b.get(key, 0.0)
            total[key] = total.get(key, 0.0) + (inc if inc >= 0 else value)
    return {}, total
