"""The durable write path alone: SQLite message store appends as the server makes them, CPU per message.

    python -m experiments.bench_durable --messages 20000 --writers 256 --repeat 3

Each message is what one 1:1 send costs the store: ``append`` (the sender waits for the durable commit, as for
its ``sent`` ack), then the sender's own mark and the recipient's delivered mark through ``queue_marks``. The
figures are writes/s and the process's CPU time (event loop and writer thread together, ``time.process_time``)
per message, plus commits per message, as medians of ``--repeat`` runs. ``--rate R`` is an open loop instead
(Poisson arrivals at R msgs/s, ``--messages`` in all, over ``--writers`` conversations), the low-rate case where
the commit window matters; it also reports append latency. It uses only the store's public API, so one script compares two commits of the
project (run it with PYTHONPATH pointing at each, interleaved, on this shared machine).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from core.clock import SystemClock
from core.metrics import Metrics
from core.models import MessageDraft, MessageKind
from strategies.context import StrategyContext
from strategies.store import MESSAGE_STORES
from strategies.store.config import MessageStoreConfig


def _commits(metrics: Metrics) -> float:
    for metric in metrics.store_batch_size.collect():
        for s in metric.samples:
            if s.name.endswith("_count"):
                return float(s.value)
    return 0.0


def _db_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.glob("m.db*"))


async def run_once(messages: int, writers: int, extra: dict[str, Any], rate: float = 0.0) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        metrics = Metrics()
        cfg = TypeAdapter(MessageStoreConfig).validate_python({"kind": "sqlite", "path": "m.db", **extra})
        store: Any = MESSAGE_STORES.create(cfg, StrategyContext(SystemClock(), metrics, Path(tmp), "bench"))
        await store.start()
        ids = itertools.count(1)
        per = messages // writers

        async def writer(w: int) -> None:
            peer = w + 1_000_000
            conv = f"d:{w}:{peer}"
            for i in range(per):
                r = await store.append(
                    MessageDraft(
                        next(ids), conv, w, "dev", f"c{i}", MessageKind.TEXT,
                        {"text": "hello world, a short chat message"}, int(time.time() * 1000), f"{w}:dev:c{i}",
                    )
                )  # fmt: skip
                seq = r.message.seq
                store.queue_marks(conv, w, delivered=seq, read=seq)
                store.queue_marks(conv, peer, delivered=seq)

        latencies: list[float] = []

        async def one(w: int, i: int) -> None:
            peer = w + 1_000_000
            conv = f"d:{w}:{peer}"
            t = time.perf_counter()
            r = await store.append(
                MessageDraft(
                    next(ids), conv, w, "dev", f"c{i}", MessageKind.TEXT,
                    {"text": "hello world, a short chat message"}, int(time.time() * 1000), f"{w}:dev:c{i}",
                )
            )  # fmt: skip
            latencies.append(time.perf_counter() - t)
            seq = r.message.seq
            store.queue_marks(conv, w, delivered=seq, read=seq)
            store.queue_marks(conv, peer, delivered=seq)

        async def open_loop() -> None:
            rnd = random.Random(1)
            tasks = []
            next_at = time.perf_counter()
            for i in range(per * writers):
                next_at += rnd.expovariate(rate)
                delay = next_at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.ensure_future(one(1 + i % writers, i)))
            await asyncio.gather(*tasks)

        cpu0, t0, c0 = time.process_time(), time.perf_counter(), _commits(metrics)
        if rate:
            await open_loop()
        else:
            await asyncio.gather(*(writer(w) for w in range(1, writers + 1)))
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        commits = _commits(metrics) - c0
        await store.close()
        n = per * writers
        lat = sorted(latencies) or [float("nan")]
        return {
            "append_p50_ms": lat[len(lat) // 2] * 1000,
            "append_p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
            "writes_per_s": n / elapsed,
            "cpu_us_per_msg": cpu / n * 1e6,
            "commits_per_msg": commits / n,
            "db_bytes_per_msg": _db_bytes(Path(tmp)) / n,
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--writers", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rate", type=float, default=0.0, help="open loop at this many msgs/s (0: closed loop)")
    ap.add_argument("--config", default="{}", help="extra SQLite store config as JSON (e.g. synchronous)")
    args = ap.parse_args()
    extra = json.loads(args.config)
    runs = [asyncio.run(run_once(args.messages, args.writers, extra, args.rate)) for _ in range(args.repeat)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(json.dumps({"args": vars(args), "median": med, "runs": runs}))


if __name__ == "__main__":
    main()
