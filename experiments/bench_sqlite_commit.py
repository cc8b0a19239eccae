"""Microbenchmark of the SQLite message store's group commit (the design decision in docs/architecture.md).

    python experiments/bench_sqlite_commit.py --messages 20000 --concurrency 50 200 --repeat 5

Appends through ``SqliteMessageStore.append`` from N concurrent writers (one conversation each, each message with
a dedup key, as the server sends them) and prints appends/s and the mean commit time per concurrency level, as
the median of the repetitions. It uses only the store's public API, so the same script measures any commit of the
project (that is how the aiosqlite version was compared).

``--loop-busy-us N`` keeps the event loop as busy as a server's: a background task holds the loop for N us and
yields, over and over, so every callback waits up to N us for its turn. A store alone on an idle loop hides what
each hop between the loop and a database thread costs inside the server; this brings it back.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import tempfile
import time
from pathlib import Path

from core.clock import SystemClock
from core.metrics import Metrics
from core.models import MessageDraft, MessageKind
from strategies.context import StrategyContext
from strategies.store.config import SqliteStoreConfig
from strategies.store.sqlite.messages import SqliteMessageStore


async def _busy_loop(busy_us: float, stop: asyncio.Event) -> None:
    """Hold the loop ``busy_us`` at a time, as frame handling does in a loaded server."""
    while not stop.is_set():
        until = time.perf_counter() + busy_us / 1e6
        while time.perf_counter() < until:
            pass
        await asyncio.sleep(0)


async def run_once(messages: int, concurrency: int, busy_us: float = 0.0) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        metrics = Metrics()
        store = SqliteMessageStore(
            SqliteStoreConfig(path="m.db"), StrategyContext(SystemClock(), metrics, Path(tmp), "bench")
        )
        await store.start()
        ids = itertools.count(1)

        async def writer(w: int) -> None:
            for i in range(messages // concurrency):
                await store.append(
                    MessageDraft(
                        next(ids),
                        f"d:{w}:{w + 1_000_000}",
                        w,
                        "dev",
                        f"{w}-{i}",
                        MessageKind.TEXT,
                        {"text": "hello world"},
                        0,
                        f"{w}:{i}",
                    )
                )

        stop = asyncio.Event()
        busy = asyncio.ensure_future(_busy_loop(busy_us, stop)) if busy_us > 0 else None
        start = time.perf_counter()
        await asyncio.gather(*(writer(w) for w in range(1, concurrency + 1)))
        elapsed = time.perf_counter() - start
        stop.set()
        if busy is not None:
            await busy
        samples = {
            s.name: s.value
            for metric in metrics.store_seconds.collect()
            for s in metric.samples
            if s.labels.get("op") == "commit" and s.name.endswith(("_sum", "_count"))
        }
        count = samples.get("wsim_store_op_seconds_count", 0.0)
        mean_ms = samples.get("wsim_store_op_seconds_sum", 0.0) / count * 1000 if count else float("nan")
        await store.close()
        return (messages // concurrency) * concurrency / elapsed, mean_ms


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[50, 200])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--loop-busy-us", type=float, default=0.0, help="keep the event loop this busy (see above)"
    )
    args = ap.parse_args()
    for c in args.concurrency:
        runs = [await run_once(args.messages, c, args.loop_busy_us) for _ in range(args.repeat)]
        rates = [r for r, _ in runs]
        commits = [m for _, m in runs]
        print(
            f"concurrency {c:4d}: {statistics.median(rates):8.0f} appends/s "
            f"(min {min(rates):.0f}, max {max(rates):.0f}), mean commit {statistics.median(commits):.2f} ms, "
            f"n={args.repeat}"
        )


if __name__ == "__main__":
    asyncio.run(main())
