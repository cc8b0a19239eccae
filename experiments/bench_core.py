"""Core benchmark of one node on the embedded default (SQLite, in-process bus/cache/dedup).

    python experiments/bench_core.py                      # full scale: 10,000 connections, 2 swarm processes
    python experiments/bench_core.py --connections 500 --duration-s 5    # a quick check

Four figures, each from the asyncio swarm's own timestamps (HDR histograms) and cross-checked against the
server's /metrics:
1. idle connections one server process holds, and its memory per connection (RSS delta / connections);
2. push latency at fixed offered loads (open loop, ``--open-rates`` messages/s in total, Poisson think time, a
   ``--open-group-fraction`` share to the group): send->ack and send->deliver p50/p99/p99.9 while every connection
   stays open. This is the figure for "push latency < 100 ms": a closed loop measures capacity, and its latency
   is queueing by construction (Little's law: window x senders / throughput);
3. 1:1 messages/s persisted and delivered (closed loop: each sender keeps ``--window`` sends awaiting their
   ack), with send->ack and send->deliver p50/p99;
4. group fan-out deliveries/s for a ``--group-size`` member group.

Results are printed and saved to reports/bench_core/<UTC>-<sha>/result.json with the environment.
The server runs as its own process; the swarm in ``--workers`` processes, its sockets spread over several
127.0.0.x source addresses (loopback has ~28k ephemeral ports per address).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.analysis import prom
from experiments.harness.environment import ROOT, metadata, run_dir
from experiments.harness.server import ServerProcess
from experiments.load.coordinator import (
    WorkerPool,
    merge_histograms,
    percentiles_ms,
    prepare_population,
    source_addresses,
)
from experiments.load.spec import Population, Workload

# Cheap argon2 (registration of thousands of users), limits out of the way of a capacity measurement.
BENCH_SERVER: dict[str, Any] = {
    "server": {"gc_tuning": True, "log_level": "warning", "web_client": False},
    "auth": {
        "argon2_time_cost": 1,
        "argon2_memory_kib": 1024,
        "argon2_parallelism": 1,
        "max_concurrent_hashes": 4,
        "access_ttl_s": 86400,
    },
    "limits": {
        "rate_per_s": 100_000,
        "rate_burst": 100_000,
        "max_group_members": 5000,
        "outbound_queue_frames": 100_000,
        "max_pending_deliveries": 100_000,
        "max_connections_per_address": 1_000_000,  # every load client connects from this machine
    },
}


def _say(msg: str) -> None:
    print(f"[bench_core {time.strftime('%H:%M:%S')}] {msg}", flush=True)


async def _phase(
    pool: WorkerPool,
    server: ServerProcess,
    workload: Workload,
    senders: list[int],
) -> dict[str, Any]:
    await pool.call(lambda _: {"cmd": "reset"})
    await pool.call(lambda _: {"cmd": "workload", "workload": workload.model_dump()})
    before = prom.parse(await server.metrics_text())
    start_at = time.time_ns() + 500_000_000
    runs = await pool.call(lambda i: {"cmd": "run", "start_at_ns": start_at, "senders": senders, "seed": i})
    after = prom.parse(await server.metrics_text())
    dumps = await pool.call(lambda _: {"cmd": "dump", "ledger": False})
    hist = {k: merge_histograms([d["histograms"][k] for d in dumps]) for k in dumps[0]["histograms"]}
    duration = workload.duration_s
    acked = hist["send_ack_us"].get_total_count()
    delivered = hist["send_deliver_us"].get_total_count() + hist["send_deliver_sync_us"].get_total_count()
    errors: dict[str, int] = {}
    for d in dumps:
        for code, n in d["stats"]["errors"].items():
            errors[code] = errors.get(code, 0) + n
    return {
        "duration_s": duration,
        "senders": len(senders),
        "window": workload.window,
        "drained": all(r["drained"] for r in runs),
        "acked": acked,
        "acked_per_s": acked / duration,
        "delivered": delivered,
        "delivered_per_s": delivered / duration,
        "send_ack_ms": percentiles_ms(hist["send_ack_us"]),
        "send_deliver_ms": percentiles_ms(hist["send_deliver_us"]),
        "errors": errors,
        "server": {
            "messages_stored": prom.delta(before, after, "wsim_messages_stored_total"),
            "messages_stored_per_s": prom.delta(before, after, "wsim_messages_stored_total") / duration,
            "frames_out_per_s": prom.delta(before, after, "wsim_frames_out_total") / duration,
            "send_ack_ms": prom.histogram_summary(before, after, "wsim_send_ack_seconds"),
            "send_deliver_ms": prom.histogram_summary(before, after, "wsim_send_deliver_seconds"),
            "retries": prom.delta(before, after, "wsim_delivery_retries_total"),
            # collector pauses during the phase: (count, total ms) per generation
            "gc_pauses": {
                g: {
                    "count": prom.delta(before, after, "wsim_gc_pause_seconds_count", generation=g),
                    "total_ms": prom.delta(before, after, "wsim_gc_pause_seconds_sum", generation=g) * 1000,
                }
                for g in ("0", "1", "2")
            },
        },
    }


def _sum_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            total[k] = total.get(k, 0) + v
    return total


def median_of(runs: list[Any]) -> Any:
    """Field-wise median of repeated phase results (numbers: the median of the runs that have one; mappings:
    recursively; anything else: the first)."""
    present = [r for r in runs if r is not None]
    if not present:
        return None
    first = present[0]
    if isinstance(first, dict):
        return {k: median_of([r.get(k) for r in present if isinstance(r, dict)]) for k in first}
    if isinstance(first, bool) or not isinstance(first, (int, float)):
        return first
    if all(v == first for v in present):
        return first  # an unchanging setting (senders, window) stays as it was
    values = sorted(float(v) for v in present if isinstance(v, (int, float)))
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


async def _repeated(
    pool: WorkerPool, server: ServerProcess, workload: Workload, senders: list[int], repeats: int
) -> dict[str, Any]:
    """Run a phase ``repeats`` times on the same connections: report medians (this machine is noisy), keep all."""
    runs = [await _phase(pool, server, workload, senders) for _ in range(repeats)]
    result: dict[str, Any] = median_of(runs)
    result["repeats"] = repeats
    result["acked_per_s_range"] = [min(r["acked_per_s"] for r in runs), max(r["acked_per_s"] for r in runs)]
    result["delivered_per_s_range"] = [
        min(r["delivered_per_s"] for r in runs),
        max(r["delivered_per_s"] for r in runs),
    ]
    result["runs"] = runs
    return result


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    n = args.connections
    pair_users = min(args.pair_users, n)
    group_size = min(args.group_size, n)
    with tempfile.TemporaryDirectory(prefix="wsim-bench-", dir=args.data_dir) as tmp:
        server = ServerProcess(BENCH_SERVER, Path(tmp), "bench")
        await server.start()
        pool = WorkerPool(args.workers, Path(tmp) / "workers")
        try:
            _say(f"server pid {server.pid} on {server.url}; preparing {n} users")
            pop = Population(
                users=n,
                social_users=max(pair_users, 2),
                friends_per_user=2,
                groups=1,
                group_size=group_size,
                workers=args.workers,
                setup_concurrency=32,
            )
            creds = await prepare_population(server.url, pop, progress=_say)
            addrs = source_addresses(n, args.source_addresses)
            await pool.start()
            await pool.setup(server.ws_url, creds, addrs, Workload().model_dump())
            await asyncio.sleep(1.0)  # let registration's garbage settle before the memory baseline
            rss_before = server.rss_bytes()
            _say(f"connecting {n} sockets from {len(addrs)} source addresses, {args.workers} swarm processes")
            per_worker_rate = args.connect_rate / args.workers
            t0 = time.monotonic()
            conns = await pool.call(
                lambda _: {"cmd": "connect", "rate_per_s": per_worker_rate, "timeout_s": 600}
            )
            connect_s = time.monotonic() - t0
            connected = sum(c["connected"] for c in conns)
            _say(
                f"{connected} connected ({sum(c['failed'] for c in conns)} failed) in {connect_s:.1f} s; holding {args.hold_s} s"
            )
            await asyncio.sleep(args.hold_s)
            rss_after = server.rss_bytes()
            stats = await pool.call(lambda _: {"cmd": "stats"})
            still = sum(s["stats"]["online"] for s in stats)
            samples = prom.parse(await server.metrics_text())
            server_conns = prom.total(samples, "wsim_connections")
            idle = {
                "connections_target": n,
                "connected": connected,
                "still_connected_after_hold": still,
                "server_gauge_connections": server_conns,
                "connect_s": connect_s,
                "hold_s": args.hold_s,
                "rss_before_bytes": rss_before,
                "rss_after_bytes": rss_after,
                "bytes_per_connection": (rss_after - rss_before) / max(1, connected),
                # why a connection was not held: failed attempts and the close codes the clients saw
                "connect_failures": sum(s["stats"]["connect_failures"] for s in stats),
                "close_codes": _sum_counts(s["stats"]["closes"] for s in stats),
                "source_addresses": addrs,
            }
            _say(f"idle: {still} held, {idle['bytes_per_connection'] / 1024:.1f} KiB per connection")

            open_loop = []
            for rate in args.open_rates:
                load = Workload(
                    duration_s=args.duration_s,
                    rate_per_user_per_s=rate / pair_users,
                    group_fraction=args.open_group_fraction,
                    read_every=10,
                    drain_s=30,
                )
                _say(f"open loop: {rate:,.0f} msgs/s offered by {pair_users} users, {args.duration_s} s")
                phase = await _repeated(pool, server, load, list(range(pair_users)), args.repeats)
                phase["offered_per_s"] = rate
                phase["group_fraction"] = args.open_group_fraction
                open_loop.append(phase)
                _say(
                    f"open loop {rate:,.0f}/s: send->deliver p50 {_fmt(phase['send_deliver_ms']['p50'], ' ms')}, "
                    f"p99 {_fmt(phase['send_deliver_ms']['p99'], ' ms')}"
                )

            direct = Workload(
                duration_s=args.duration_s, window=args.window, group_fraction=0.0, read_every=0, drain_s=30
            )
            _say(f"1:1: {pair_users} senders, window {args.window}, {args.duration_s} s")
            one_to_one = await _repeated(pool, server, direct, list(range(pair_users)), args.repeats)
            _say(
                f"1:1: {one_to_one['acked_per_s']:.0f} msgs/s acked, {one_to_one['delivered_per_s']:.0f} delivered/s"
            )

            group = Workload(
                duration_s=args.duration_s,
                window=args.group_window,
                group_fraction=1.0,
                read_every=0,
                drain_s=30,
            )
            senders = list(range(min(args.group_senders, group_size)))
            _say(f"fan-out: group of {group_size}, {len(senders)} senders, window {args.group_window}")
            fanout = await _repeated(pool, server, group, senders, args.repeats)
            fanout["group_size"] = group_size
            _say(f"fan-out: {fanout['delivered_per_s']:.0f} deliveries/s")
            cpu = [s.cpu_percent for s in server.samples]
        finally:
            await pool.close()
            await server.stop()
    return {
        "benchmark": "bench_core",
        "store": "sqlite (embedded default)",
        "args": vars(args),
        "idle": idle,
        "open_loop": open_loop,
        "one_to_one": one_to_one,
        "fanout": fanout,
        "server_cpu_percent_median": sorted(cpu)[len(cpu) // 2] if cpu else None,
        "environment": metadata("bench_core"),
    }


def _fmt(v: float | None, unit: str = "") -> str:
    return "-" if v is None else f"{v:,.1f}{unit}"


def _range(r: list[float]) -> str:
    return f"range {r[0]:,.0f}-{r[1]:,.0f}"


def report(result: dict[str, Any]) -> str:
    idle, one, fan = result["idle"], result["one_to_one"], result["fanout"]
    env = result["environment"]
    lines = [
        f"wsim core benchmark ({result['store']}) on {env['cpu_count']} x {env['cpu_model']}, git {env['git_sha']}",
        "",
        "| figure | value |",
        "|---|---|",
        f"| idle connections held by one process | {idle['still_connected_after_hold']:,} of {idle['connections_target']:,} |",
        f"| connection attempts that failed; close codes seen by clients | {idle.get('connect_failures', '-')}; {idle.get('close_codes') or 'none'} |",
        f"| memory per connection (RSS delta / connections) | {idle['bytes_per_connection'] / 1024:.1f} KiB |",
        *(
            f"| push latency at {o['offered_per_s']:,.0f} msgs/s offered ({o['acked_per_s']:,.0f} acked/s, "
            f"{o['group_fraction']:.0%} to the group): send->deliver p50 / p99 / p99.9 | "
            f"{_fmt(o['send_deliver_ms']['p50'], ' ms')} / {_fmt(o['send_deliver_ms']['p99'], ' ms')} / "
            f"{_fmt(o['send_deliver_ms'].get('p99_9'), ' ms')} |"
            for o in result.get("open_loop", [])
        ),
        f"| 1:1 messages/s persisted and acked ({one['senders']} senders, window {one['window']}) | {one['acked_per_s']:,.0f} ({_range(one['acked_per_s_range'])}) |",
        f"| 1:1 deliveries/s | {one['delivered_per_s']:,.0f} ({_range(one['delivered_per_s_range'])}) |",
        f"| 1:1 send->ack p50 / p99 (swarm) | {_fmt(one['send_ack_ms']['p50'], ' ms')} / {_fmt(one['send_ack_ms']['p99'], ' ms')} |",
        f"| 1:1 send->deliver p50 / p99 (swarm) | {_fmt(one['send_deliver_ms']['p50'], ' ms')} / {_fmt(one['send_deliver_ms']['p99'], ' ms')} |",
        f"| 1:1 send->ack p50 / p99 (server /metrics) | {_fmt(one['server']['send_ack_ms']['p50'], ' ms')} / {_fmt(one['server']['send_ack_ms']['p99'], ' ms')} |",
        f"| group fan-out deliveries/s ({fan['group_size']} members, {fan['senders']} senders) | {fan['delivered_per_s']:,.0f} ({_range(fan['delivered_per_s_range'])}) |",
        f"| fan-out send->deliver p50 / p99 (swarm) | {_fmt(fan['send_deliver_ms']['p50'], ' ms')} / {_fmt(fan['send_deliver_ms']['p99'], ' ms')} |",
        f"| server CPU (median of samples, % of one core) | {_fmt(result['server_cpu_percent_median'])} |",
        "",
        f"Rates and latencies: median of {one['repeats']} repetitions of each phase on the same connections "
        "(range: slowest-fastest); latencies from the swarm's HDR histograms unless marked /metrics.",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connections", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=2, help="swarm processes")
    p.add_argument("--connect-rate", type=float, default=1000.0, help="new connections per second, in total")
    p.add_argument(
        "--hold-s", type=float, default=10.0, help="idle hold before counting and measuring memory"
    )
    p.add_argument("--pair-users", type=int, default=1000, help="users sending 1:1 (ring friends)")
    p.add_argument(
        "--open-rates",
        type=lambda v: [float(x) for x in v.split(",") if x],
        default=[500.0, 1000.0, 2000.0],
        help="offered loads (msgs/s in total, comma-separated) of the open-loop push-latency phase; '' skips it",
    )
    p.add_argument(
        "--open-group-fraction", type=float, default=0.0, help="share of open-loop sends to the group"
    )
    p.add_argument("--window", type=int, default=4, help="1:1 sends awaiting their ack per sender")
    p.add_argument("--group-size", type=int, default=200)
    p.add_argument("--group-senders", type=int, default=4)
    p.add_argument("--group-window", type=int, default=4)
    p.add_argument("--duration-s", type=float, default=20.0)
    p.add_argument(
        "--repeats", type=int, default=3, help="repetitions of the 1:1 and fan-out phases (medians)"
    )
    p.add_argument("--source-addresses", type=int, default=0, help="0: one per 10,000 connections")
    p.add_argument("--out", type=Path, default=ROOT / "reports")
    p.add_argument(
        "--data-dir", help="parent of the server's temporary data directory (default: the system temp)"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = asyncio.run(bench(args))
    out = run_dir(args.out, "bench_core")
    args_json = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    result["args"] = args_json
    (out / "result.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    text = report(result)
    (out / "report.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    print(f"\nsaved to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
