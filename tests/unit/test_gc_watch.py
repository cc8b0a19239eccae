"""The node's collector watch records each pause in wall time and in the collecting thread's CPU time."""

from __future__ import annotations

import gc
from itertools import pairwise
from types import SimpleNamespace
from typing import Any

from core.app import _watch_gc
from core.metrics import Metrics
from experiments.analysis import prom


def test_each_collection_is_recorded_in_wall_and_cpu_time() -> None:
    node: Any = SimpleNamespace(metrics=Metrics(), gc_callback=None)
    _watch_gc(node)
    try:
        junk: list[list[Any]] = [[] for _ in range(1000)]
        for a, b in pairwise(junk):
            a.append(b)  # something for the collector to walk
        gc.collect(1)
    finally:
        gc.callbacks.remove(node.gc_callback)
    samples = prom.parse(node.metrics.render().decode())
    walls = prom.total(samples, "wsim_gc_pause_seconds_count", generation="1")
    cpus = prom.total(samples, "wsim_gc_pause_cpu_seconds_count", generation="1")
    assert walls >= 1 and cpus == walls
    # CPU time can't exceed the pause's wall time by more than the clocks' resolution
    wall_s = prom.total(samples, "wsim_gc_pause_seconds_sum", generation="1")
    cpu_s = prom.total(samples, "wsim_gc_pause_cpu_seconds_sum", generation="1")
    assert 0 <= cpu_s <= wall_s + 0.002 * walls
