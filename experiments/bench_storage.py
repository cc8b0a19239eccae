"""Storage benchmark: per message store, persisted write throughput, history page latency at N stored messages,
and per cache tier, hit rate and latency under a Zipf read workload; plus the read vs write fan-out timeline cost
as the group size grows. Not a test: it produces figures, in a result folder with the resolved configuration and
the environment (STYLE.md principle 8).

Small scale (proves the script, ~1 min):
    python -m experiments.bench_storage --scale small
Full scale (run on a quiet machine; ~30-60 min):
    python -m experiments.bench_storage --scale full

Services: MariaDB at --mysql-dsn, Redis at --redis-url, and MongoDB at --mongo-uri; without --mongo-uri the
nx-27017 stand-in is started (its figures say nothing about real MongoDB: use a real mongod for the thesis).
Every backend writes into a database/prefix of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from core.clock import SystemClock
from core.metrics import Metrics
from core.models import Message, MessageDraft, MessageKind
from strategies import cache, timeline
from strategies.cache.base import Cache, cached
from strategies.cache.config import CacheConfig
from strategies.context import StrategyContext
from strategies.ids.config import SnowflakeConfig
from strategies.ids.snowflake import SnowflakeIds
from strategies.store import MESSAGE_STORES
from strategies.store.config import MessageStoreConfig
from strategies.timeline.base import TimelineContext
from strategies.timeline.config import TimelineConfig

ROOT = Path(__file__).resolve().parents[1]

SCALES: dict[str, dict[str, Any]] = {
    "small": {
        "writes": 3000,
        "writers": 64,
        "convs": 200,
        "history_messages": 20_000,
        "history_queries": 300,
        "page": 50,
        "cache_keys": 2000,
        "cache_reads": 20_000,
        "timeline_groups": [2, 10, 50],
        "timeline_messages": 60,
        "repeat": 1,
    },
    "full": {
        "writes": 100_000,
        "writers": 256,
        "convs": 10_000,
        "history_messages": 1_000_000,
        "history_queries": 5000,
        "page": 50,
        "cache_keys": 100_000,
        "cache_reads": 500_000,
        "timeline_groups": [2, 10, 50, 200, 500],
        "timeline_messages": 500,
        "repeat": 3,
    },
}


def pct(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def summary_ms(values: Sequence[float]) -> dict[str, float]:
    return {"p50_ms": pct(values, 50) * 1000, "p99_ms": pct(values, 99) * 1000, "n": len(values)}


@dataclass
class Env:
    tmp: Path
    mysql_dsn: str
    mongo_uri: str
    redis_url: str
    ids: SnowflakeIds

    def ctx(self, metrics: Metrics | None = None) -> StrategyContext:
        return StrategyContext(SystemClock(), metrics or Metrics(), self.tmp, "bench")


# --------------------------------------------------------------------------- backends


@contextlib.asynccontextmanager
async def message_store(kind: str, env: Env, metrics: Metrics | None = None) -> AsyncIterator[Any]:
    name = f"wsim_bench_{secrets.token_hex(3)}"
    configs: dict[str, dict[str, Any]] = {
        "sqlite": {"kind": "sqlite", "path": str(env.tmp / f"{name}.db")},
        "mysql": {"kind": "mysql", "dsn": env.mysql_dsn.rstrip("/") + f"/{name}"},
        "mongo": {"kind": "mongo", "uri": env.mongo_uri, "database": name},
    }
    cfg = TypeAdapter(MessageStoreConfig).validate_python(configs[kind])
    store: Any = MESSAGE_STORES.create(cfg, env.ctx(metrics))
    await store.start()
    try:
        yield store
    finally:
        await store.close()
        await drop(kind, env, name)


async def drop(kind: str, env: Env, name: str) -> None:
    if kind == "mysql":
        import aiomysql

        from strategies.store.mysql.db import parse_dsn

        d = parse_dsn(env.mysql_dsn.rstrip("/") + f"/{name}")
        conn = await aiomysql.connect(
            host=d.host, port=d.port, user=d.user, password=d.password, autocommit=True
        )
        async with conn.cursor() as cur:
            await cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()
    elif kind == "mongo":
        from pymongo import AsyncMongoClient

        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(env.mongo_uri)
        await client.drop_database(name)
        await client.close()


def draft(env: Env, conv: str, i: int) -> MessageDraft:
    mid = env.ids.next_id(int(time.time() * 1000))
    return MessageDraft(
        mid, conv, 1 + i % 50, "bench", f"b{mid}", MessageKind.TEXT, {"text": f"message {i} " + "x" * 40},
        int(time.time() * 1000), f"{1 + i % 50}:bench:b{mid}",
    )  # fmt: skip


# --------------------------------------------------------------------------- measurements


async def bench_writes(kind: str, env: Env, p: dict[str, Any]) -> dict[str, Any]:
    """``writers`` concurrent senders, each waiting for its durable ack before the next send (like clients)."""
    async with message_store(kind, env) as store:
        convs = [f"g:{i + 1}" for i in range(p["convs"])]
        latencies: list[float] = []
        per_writer = p["writes"] // p["writers"]

        async def writer(w: int) -> None:
            rnd = random.Random(w)
            for i in range(per_writer):
                t = time.perf_counter()
                await store.append(draft(env, rnd.choice(convs), i))
                latencies.append(time.perf_counter() - t)

        start = time.perf_counter()
        await asyncio.gather(*(writer(w) for w in range(p["writers"])))
        elapsed = time.perf_counter() - start
        return {"persisted_per_s": len(latencies) / elapsed, "append": summary_ms(latencies)}


async def bench_history(kind: str, env: Env, p: dict[str, Any]) -> dict[str, Any]:
    """Preload ``history_messages`` (bulk import keeps ids and seqs), then random ``page``-sized pages."""
    async with message_store(kind, env) as store:
        n, convs = p["history_messages"], p["convs"]
        per_conv = n // convs
        now = int(time.time() * 1000)
        batch: list[Message] = []
        load_start = time.perf_counter()
        for c in range(convs):
            for s in range(1, per_conv + 1):
                mid = env.ids.next_id(now)
                batch.append(
                    Message(
                        mid, f"g:{c + 1}", s, 1, "bench", f"h{mid}", MessageKind.TEXT, {"text": "y" * 60}, now
                    )
                )
                if len(batch) >= 5000:
                    await store.import_messages(batch)
                    batch = []
        if batch:
            await store.import_messages(batch)
        load_s = time.perf_counter() - load_start
        rnd = random.Random(7)
        lat: list[float] = []
        for _ in range(p["history_queries"]):
            conv = f"g:{rnd.randrange(convs) + 1}"
            before = rnd.randrange(2, per_conv + 2)
            t = time.perf_counter()
            page = await store.messages_before(conv, before, p["page"])
            lat.append(time.perf_counter() - t)
            assert page and page[-1].seq == before - 1
        return {"stored": per_conv * convs, "load_s": load_s, "page": summary_ms(lat)}


def zipf_keys(n_keys: int, n: int, s: float, seed: int) -> list[int]:
    weights = [1 / (k**s) for k in range(1, n_keys + 1)]
    return random.Random(seed).choices(range(n_keys), weights=weights, k=n)


async def bench_cache(tier: str, env: Env, p: dict[str, Any], zipf_s: float) -> dict[str, Any]:
    """Two nodes share the workload; 1 % of operations are writes (store update, then invalidation). The loader
    is a real store read (a history page of the SQLite message store), so a miss costs what a miss costs."""
    prefix = f"wsimbench{secrets.token_hex(3)}:"
    l2 = {"kind": "l2", "url": env.redis_url, "prefix": prefix}
    cfgs: dict[str, dict[str, Any]] = {
        "off": {"kind": "off"},
        "l1": {"kind": "l1"},
        "l2": l2,
        "l1+l2": {"kind": "l1+l2", "l2": l2},
    }
    metrics = Metrics()
    nodes: list[Cache] = []
    for _ in range(2):
        c = cache.REGISTRY.create(TypeAdapter(CacheConfig).validate_python(cfgs[tier]), env.ctx(metrics))
        await c.start()
        nodes.append(c)
    async with message_store("sqlite", env) as store:
        for k in range(min(p["cache_keys"], 500)):
            await store.append(draft(env, f"g:{k + 1}", k))
        keys = zipf_keys(p["cache_keys"], p["cache_reads"], zipf_s, seed=11)
        rnd = random.Random(3)
        lat: list[float] = []

        def loader(k: int) -> Callable[[], Awaitable[Any]]:
            async def load() -> Any:
                page = await store.messages_before(f"g:{k % 500 + 1}", 2**53, 1)
                return [m.wire() for m in page]

            return load

        for i, k in enumerate(keys):
            node = nodes[i % 2]
            if rnd.random() < 0.01:
                await node.delete("bench", str(k))
                continue
            t = time.perf_counter()
            await cached(node, "bench", str(k), loader(k))
            lat.append(time.perf_counter() - t)
    for c in nodes:
        await c.close()
    if tier in ("l2", "l1+l2"):
        import redis.asyncio as aioredis

        r = aioredis.Redis.from_url(env.redis_url)
        ks = [k async for k in r.scan_iter(match=f"{prefix}*")]
        if ks:
            await r.delete(*ks)
        await r.aclose()
    per_tier: dict[str, dict[str, float]] = {}
    for fam in metrics.registry.collect():
        if fam.name not in ("wsim_cache_hits", "wsim_cache_misses"):
            continue
        for sample in fam.samples:
            if sample.name.endswith("_total"):
                counts = per_tier.setdefault(sample.labels["tier"], {"hits": 0.0, "misses": 0.0})
                counts["hits" if fam.name == "wsim_cache_hits" else "misses"] += sample.value
    for counts in per_tier.values():
        counts["hit_rate"] = counts["hits"] / max(1.0, counts["hits"] + counts["misses"])
    # overall: a read is a hit if any tier answered it (misses of the last tier are the store reads)
    last = {"off": "off", "l1": "l1", "l2": "l2", "l1+l2": "l2"}[tier]
    store_reads = per_tier.get(last, {}).get("misses", 0.0)
    # The best any cache can do on this key sequence: the first read of a key on a cache is a miss. A cache shared
    # by the nodes (l2) sees each key cold once; per-node caches (l1) once per node. A hit rate is read against it.
    shared = tier in ("l2", "l1+l2")
    cold = len(set(keys)) if shared else len({(i % 2, k) for i, k in enumerate(keys)})
    return {
        "reads": len(lat),
        "hit_rate": 1 - store_reads / max(1, len(lat)),
        "cold_miss_ceiling": 0.0 if tier == "off" else 1 - cold / max(1, len(keys)),
        "per_tier": per_tier,
        "read": summary_ms(lat),
    }


async def bench_timeline(model: str, env: Env, p: dict[str, Any]) -> dict[str, Any]:
    """Per group size: the cost of one send (append + fan-out before "sent") and of one member's sync after
    ``timeline_messages`` messages spread over 10 conversations of that size."""
    out: dict[str, Any] = {}
    for size in p["timeline_groups"]:
        metrics = Metrics()
        async with message_store("sqlite", env, metrics) as store:
            tl: Any = timeline.REGISTRY.create(
                TypeAdapter(TimelineConfig).validate_python({"kind": model}),
                TimelineContext.of(env.ctx(metrics), store, env.ids),
            )
            members = list(range(1, size + 1))
            sends: list[float] = []
            for i in range(p["timeline_messages"]):
                conv = f"g:{i % 10 + 1}"
                t = time.perf_counter()
                msg = (await store.append(draft(env, conv, i))).message
                await tl.on_append(msg, members)
                sends.append(time.perf_counter() - t)
            # sync of member 1 from the start: inbox pages, or heads + one page per conversation
            t = time.perf_counter()
            queries = 0
            page = await tl.inbox_after(1, 0, 200)
            if page is not None:
                queries += 1
                while page.more:
                    page = await tl.inbox_after(1, page.cursor, 200)
                    queries += 1
            else:
                convs = [f"g:{c + 1}" for c in range(10)]
                await store.heads(convs)
                queries += 1
                for c in convs:
                    await store.messages_after(c, 0, 200)
                    queries += 1
            sync_s = time.perf_counter() - t
            out[str(size)] = {"send": summary_ms(sends), "sync_ms": sync_s * 1000, "sync_queries": queries}
    return out


# --------------------------------------------------------------------------- run


@contextlib.contextmanager
def maybe_nx(uri: str | None, tmp: Path) -> Iterator[str]:
    if uri:
        yield uri
        return
    from tests.support.stores import nx_27017

    with nx_27017(tmp / "nx") as started:
        yield started


def environment() -> dict[str, Any]:
    sha = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    return {
        "git": sha.stdout.strip(),
        "dirty": bool(dirty.stdout.strip()),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "utc": datetime.now(UTC).isoformat(),
    }


def median_of(runs: list[Any]) -> Any:
    """Median of each numeric leaf across repeated runs (the figures the report quotes)."""
    first = runs[0]
    if isinstance(first, dict):
        return {k: median_of([r[k] for r in runs]) for k in first}
    if isinstance(first, bool):
        return first
    if isinstance(first, int | float):
        return statistics.median(runs)
    return first


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    p = dict(SCALES[args.scale])
    for key in ("writes", "history_messages", "cache_reads", "repeat"):
        if getattr(args, key) is not None:
            p[key] = getattr(args, key)
    mongo_server = args.mongo_uri or "nx-27017 stand-in (figures say nothing about MongoDB)"
    results: dict[str, Any] = {"params": p, "zipf_s": args.zipf_s, "mongo_server": mongo_server}
    with tempfile.TemporaryDirectory(prefix="wsim-bench-") as tmpdir:
        tmp = Path(tmpdir)
        with maybe_nx(args.mongo_uri if "mongo" in args.backends else "unused", tmp) as mongo_uri:
            ids = SnowflakeIds(
                SnowflakeConfig(node_id=77), StrategyContext(SystemClock(), Metrics(), tmp, "bench")
            )
            env = Env(tmp, args.mysql_dsn, mongo_uri, args.redis_url, ids)
            runs: list[dict[str, Any]] = []
            for rep in range(p["repeat"]):
                run: dict[str, Any] = {"writes": {}, "history": {}, "cache": {}, "timeline": {}}
                for kind in args.backends:
                    print(f"[{rep}] {kind}: writes", flush=True)
                    run["writes"][kind] = await bench_writes(kind, env, p)
                    print(f"[{rep}] {kind}: history", flush=True)
                    run["history"][kind] = await bench_history(kind, env, p)
                for tier in args.cache_tiers:
                    print(f"[{rep}] cache {tier}", flush=True)
                    run["cache"][tier] = await bench_cache(tier, env, p, args.zipf_s)
                for model in ("read", "write"):
                    print(f"[{rep}] timeline {model}", flush=True)
                    run["timeline"][model] = await bench_timeline(model, env, p)
                runs.append(run)
            results["median"] = median_of(runs)
            results["runs"] = runs
    return results


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=sorted(SCALES), default="small")
    ap.add_argument("--backends", type=lambda s: s.split(","), default=["sqlite", "mysql", "mongo"])
    ap.add_argument("--cache-tiers", type=lambda s: s.split(","), default=["off", "l1", "l2", "l1+l2"])
    ap.add_argument("--mysql-dsn", default="mysql://root@127.0.0.1:3306")
    ap.add_argument("--mongo-uri", default=None, help="a real MongoDB; default: start the nx-27017 stand-in")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--zipf-s", type=float, default=1.1)
    ap.add_argument("--writes", type=int)
    ap.add_argument("--history-messages", type=int)
    ap.add_argument("--cache-reads", type=int)
    ap.add_argument("--repeat", type=int)
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench_storage"))
    args = ap.parse_args(argv)
    started = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    env_info = environment()
    results = asyncio.run(main_async(args))
    folder = Path(args.out) / f"{started}-{env_info['git']}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.resolved.json").write_text(
        json.dumps({"args": vars(args), "params": results["params"]}, indent=2)
    )
    (folder / "metadata.json").write_text(
        json.dumps({"kind": "bench_storage", **env_info, "mongo_server": results["mongo_server"]}, indent=2)
    )
    (folder / "summary.json").write_text(json.dumps(results["median"], indent=2))
    (folder / "runs.json").write_text(json.dumps(results["runs"], indent=2))
    print_table(results["median"])
    print(f"\nmongo: {results['mongo_server']}")
    print(f"\nresults in {folder}")
    return 0


def _p50_p99(q: dict[str, float], digits: int = 2) -> str:
    return f"p50 {q['p50_ms']:.{digits}f} ms  p99 {q['p99_ms']:.{digits}f} ms"


def print_table(m: dict[str, Any]) -> None:
    print("\nwrites (persisted, durable before the ack)")
    for kind, r in m["writes"].items():
        print(f"  {kind:7s} {r['persisted_per_s']:9.0f} msg/s   append {_p50_p99(r['append'])}")
    print("history page")
    for kind, r in m["history"].items():
        print(f"  {kind:7s} {r['stored']:>9} stored   {_p50_p99(r['page'])}")
    print("cache (Zipf reads, 2 nodes, 1 % invalidations)")
    for tier, r in m["cache"].items():
        ceiling = r.get("cold_miss_ceiling", 0)
        print(
            f"  {tier:7s} hit rate {r['hit_rate'] * 100:5.1f} % (ceiling {ceiling * 100:5.1f} %)   "
            f"read {_p50_p99(r['read'], 3)}"
        )
    print("timeline (group size: send p50 / sync ms / sync queries)")
    for model, sizes in m["timeline"].items():
        cells = "  ".join(
            f"{s}: {v['send']['p50_ms']:.2f}/{v['sync_ms']:.1f}/{v['sync_queries']}" for s, v in sizes.items()
        )
        print(f"  {model:6s} {cells}")


if __name__ == "__main__":
    sys.exit(main())
