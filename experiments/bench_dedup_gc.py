"""The dedup window's cost to the garbage collector: a 5-minute window of ``--ids`` message ids.

    python -m experiments.bench_dedup_gc --ids 1000000

Remembers ``--ids`` keys on a fake clock spread evenly over ``--window-s`` (so the window is full at the end, as a
server taking ids/window msgs/s would hold it), looking each key up once as the messaging service does, with the
collector on and its default thresholds; a small churn of short-lived container objects per message stands in for
the rest of a server's garbage so gen0/gen1 collections run as they would. Reports the gc-tracked objects the
window holds, the longest pause per generation (gc.callbacks), the time per remember+lookup and the RSS growth.
It uses only the Deduplicator interface, so one script compares two commits (PYTHONPATH at each).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import time
from pathlib import Path
from typing import Any

from core.clock import FakeClock
from core.metrics import Metrics
from strategies import dedup
from strategies.context import StrategyContext
from strategies.dedup.base import DedupRecord
from strategies.dedup.config import MemoryDedupConfig


class Pauses:
    def __init__(self) -> None:
        self.started = 0.0
        self.longest = {0: 0.0, 1: 0.0, 2: 0.0}
        self.count = {0: 0, 1: 0, 2: 0}
        self.over_20ms = 0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        ms = (time.perf_counter() - self.started) * 1000
        g = info["generation"]
        self.count[g] += 1
        self.longest[g] = max(self.longest[g], ms)
        self.over_20ms += ms > 20


async def run(ids: int, window_s: float) -> dict[str, Any]:
    clock = FakeClock()
    d = dedup.REGISTRY.create(
        MemoryDedupConfig(window_s=window_s, max_entries=ids),
        StrategyContext(clock, Metrics(), Path(), "bench"),
    )
    await d.start()
    step = window_s / ids
    gc.collect()
    tracked0 = len(gc.get_objects())
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    pauses = Pauses()
    gc.callbacks.append(pauses)
    churn: list[Any] = []
    t0 = time.perf_counter()
    for i in range(ids):
        key = f"{i % 5000}:dev-{i % 3}:c{i}"
        assert await d.lookup(key) is None
        await d.remember(
            key, DedupRecord(10**18 + i, f"d:{i % 5000}:{i % 7000}", i, 1_700_000_000_000 + i, f"{i:032x}")
        )
        churn.append({"frame": [i, key]})  # what a message leaves behind for a moment (frames, futures)
        if len(churn) > 64:
            churn.clear()
        clock.advance(step)
    elapsed = time.perf_counter() - t0
    gc.callbacks.remove(pauses)
    churn.clear()
    gc.collect()
    tracked = len(gc.get_objects()) - tracked0
    t = time.perf_counter()
    gc.collect()
    full_ms = (time.perf_counter() - t) * 1000
    await d.close()
    return {
        "ids": ids,
        "tracked_objects_held": tracked,
        "full_collection_ms": full_ms,
        "longest_pause_ms": {f"gen{g}": round(v, 2) for g, v in pauses.longest.items()},
        "collections": {f"gen{g}": v for g, v in pauses.count.items()},
        "pauses_over_20ms": pauses.over_20ms,
        "us_per_message": elapsed / ids * 1e6,
        "max_rss_growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ids", type=int, default=1_000_000)
    ap.add_argument("--window-s", type=float, default=300.0)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(run(args.ids, args.window_s))))


if __name__ == "__main__":
    main()
