"""Cross-node delivery latency and throughput per bus, against one node (issue 5's benchmark).

Arms: ``single`` (one node: local bus, in-memory presence) and, per bus, ``<bus>`` (N nodes as processes,
Redis presence). Clients are an asyncio swarm of SDK clients in this process, so send and receive times come from
one clock. In the N-node arms every receiver sits on a different node than its sender (direct chats: node i ->
node i+1; groups: members spread over all nodes), so every delivery crosses the bus; in ``single`` nothing does.

Each sender sends at a fixed rate (open loop: a slow server does not slow the offered load down) for
``--duration`` seconds after ``--warmup``; latency is send() call -> message released by the receiver's SDK (in
order, deduplicated). Repeats give medians; the summary gives each bus's ratio to ``single``.

Local (starts and stops the clusters itself; small proof run, then the real one on a quiet machine):
    python -m experiments.cluster_bench --duration 5 --warmup 1 --repeats 1 --pairs 6 --groups 2
    python -m experiments.cluster_bench --duration 30 --repeats 3 --pairs 60 --groups 10 --rate 20
External (nodes already running, e.g. docker compose; one arm named by --label):
    python -m experiments.cluster_bench --urls http://wsim-1:8000 http://wsim-2:8000 http://wsim-3:8000

Results: ``<out>/cluster_bench/<UTC time>-<git sha>/`` with config.resolved.yaml, metadata.json, cells/*.json and
summary.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from core.cluster import LocalCluster
from core.config import Settings, load_settings
from core.sdk import WsimClient

BUSES = ("redis", "rabbitmq", "mqtt")
PASSWORD = "bench-password-1"  # noqa: S105 - throwaway accounts of a benchmark run
FAST_AUTH = {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1}


@dataclass
class Cell:
    arm: str
    repeat: int
    nodes: int
    sent: int = 0
    acked: int = 0
    deliveries: int = 0
    expected_deliveries: int = 0
    duration_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    send_errors: int = 0
    server: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        return {
            "arm": self.arm,
            "repeat": self.repeat,
            "nodes": self.nodes,
            "sent": self.sent,
            "acked": self.acked,
            "send_errors": self.send_errors,
            "deliveries": self.deliveries,
            "expected_deliveries": self.expected_deliveries,
            "delivered_ratio": self.deliveries / self.expected_deliveries
            if self.expected_deliveries
            else None,
            "deliveries_per_s": self.deliveries / self.duration_s if self.duration_s else 0.0,
            "latency_ms": {
                "p50": _pct(lat, 0.50),
                "p90": _pct(lat, 0.90),
                "p99": _pct(lat, 0.99),
                "max": lat[-1] if lat else None,
                "count": len(lat),
            },
            # the nodes' own histograms (whole cell incl. set-up; bucket upper bounds): where the time goes
            "server": self.server,
        }


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, int(q * len(values)))]


# ---------------------------------------------------------------- arms
def arm_settings(arm: str, data_dir: Path, prefix: str, args: argparse.Namespace) -> Settings:
    base: dict[str, Any] = {
        "server": {"data_dir": str(data_dir), "log_level": "warning", "origins": ["*"]},
        "auth": FAST_AUTH,
        "limits": {"rate_per_s": 10_000, "rate_burst": 20_000, "max_connections_per_address": 1_000_000},
        "strategies": {"cache": {"kind": "off"}},
    }
    if arm != "single":
        bus: dict[str, Any] = {"kind": arm, "prefix": prefix}
        if arm == "redis":
            bus["url"] = args.redis_url
        elif arm == "rabbitmq":
            bus["url"] = args.amqp_url
        else:
            bus["host"], bus["port"] = args.mqtt_host, args.mqtt_port
        base["strategies"]["bus"] = bus
        base["strategies"]["presence"] = {"kind": "redis", "url": args.redis_url, "prefix": prefix}
    return load_settings(args.config, base)


@contextlib.asynccontextmanager
async def local_arm(
    arm: str, args: argparse.Namespace, workdir: Path
) -> AsyncIterator[tuple[list[str], Settings]]:
    prefix = f"wsimbench_{secrets.token_hex(3)}"
    settings = arm_settings(arm, workdir / arm, prefix, args)
    nodes = 1 if arm == "single" else args.nodes
    async with LocalCluster(settings, nodes) as cluster:
        yield cluster.urls, settings


# ---------------------------------------------------------------- server-side view
SERVER_HISTOGRAMS = {
    "send_ack": "wsim_send_ack_seconds",  # message.send received -> "sent" ack written (includes the store)
    "store_to_push": "wsim_send_deliver_seconds",  # stored -> frame written to a recipient (includes the bus)
}


async def server_view(urls: list[str]) -> dict[str, Any]:
    """p50/p99 (bucket upper bounds, ms) of the nodes' latency histograms, summed over nodes."""
    import httpx

    buckets: dict[str, dict[float, float]] = {k: {} for k in SERVER_HISTOGRAMS}
    async with httpx.AsyncClient(timeout=10) as http:
        for url in urls:
            text = (await http.get(f"{url}/metrics")).text
            for line in text.splitlines():
                for key, name in SERVER_HISTOGRAMS.items():
                    if line.startswith(f"{name}_bucket{{"):
                        le = line.split('le="', 1)[1].split('"', 1)[0]
                        bound = float("inf") if le == "+Inf" else float(le)
                        buckets[key][bound] = buckets[key].get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    out: dict[str, Any] = {}
    for key, cumulative in buckets.items():
        bounds = sorted(cumulative)
        total = cumulative[bounds[-1]] if bounds else 0.0
        out[key] = {
            "count": total,
            "p50_ms_le": _bucket_quantile(bounds, cumulative, total, 0.50),
            "p99_ms_le": _bucket_quantile(bounds, cumulative, total, 0.99),
        }
    return out


def _bucket_quantile(
    bounds: list[float], cumulative: dict[float, float], total: float, q: float
) -> float | None:
    if not total:
        return None
    for b in bounds:
        if cumulative[b] >= q * total:
            return b * 1000 if b != float("inf") else None
    return None


# ---------------------------------------------------------------- workload
async def make_user(url: str, name: str) -> WsimClient:
    c = WsimClient([url], backoff_base_s=0.2, backoff_cap_s=2.0)
    await c.register(name, PASSWORD, name)
    return c


def place(urls: list[str], i: int) -> str:
    return urls[i % len(urls)]


async def run_cell(urls: list[str], arm: str, repeat: int, args: argparse.Namespace) -> Cell:
    """One measurement: fresh users, pairs and groups spread over the nodes, fixed-rate senders."""
    tag = secrets.token_hex(3)
    n = len(urls)
    clients: list[WsimClient] = []
    cell = Cell(arm, repeat, n)
    try:
        # direct pairs: sender on node i, receiver on node i+1
        pairs: list[tuple[WsimClient, WsimClient, str]] = []
        for i in range(args.pairs):
            a = await make_user(place(urls, i), f"b{tag}p{i}a")
            b = await make_user(place(urls, i + 1), f"b{tag}p{i}b")
            clients += [a, b]
            await a.befriend(b)
            pairs.append((a, b, a.direct_conv(a.user_id, b.user_id)))
        # groups: members on every node; one sender each
        groups: list[tuple[WsimClient, list[WsimClient], str]] = []
        for g in range(args.groups):
            members = [await make_user(place(urls, g + k), f"b{tag}g{g}m{k}") for k in range(args.group_size)]
            clients += members
            owner = members[0]
            for m in members[1:]:
                await owner.befriend(m)
            info = await owner.create_group(f"bench {g}", [m.user_id for m in members[1:]])
            groups.append((owner, members[1:], f"g:{info['id']}"))
        await asyncio.gather(*(c.connect() for c in clients))
        await asyncio.sleep(0.5)
        for c in clients:  # system messages and presence from the set-up
            while not c.messages.empty():
                c.messages.get_nowait()

        measuring = False
        t_end = 0.0
        t_start_ns = 0

        async def receive(c: WsimClient) -> None:
            while True:
                msg = await c.messages.get()
                text = msg["body"].get("text", "") if msg["kind"] == "text" else ""
                if not text.startswith("t="):
                    continue
                sent_ns = int(text[2:].split(";", 1)[0])
                if measuring and sent_ns >= t_start_ns:
                    cell.deliveries += 1
                    cell.latencies_ms.append((time.monotonic_ns() - sent_ns) / 1e6)

        async def send_loop(c: WsimClient, conv: str, recipients: int) -> None:
            interval = 1.0 / args.rate
            nxt = time.monotonic()
            pending: set[asyncio.Task[Any]] = set()
            while time.monotonic() < t_end:
                now_ns = time.monotonic_ns()
                counted = measuring and now_ns >= t_start_ns
                task = asyncio.create_task(c.send(conv, f"t={now_ns};", timeout=30))
                pending.add(task)
                task.add_done_callback(pending.discard)
                if counted:
                    cell.sent += 1
                    cell.expected_deliveries += recipients
                    task.add_done_callback(_count_ack)
                nxt += interval
                await asyncio.sleep(max(0.0, nxt - time.monotonic()))
            if pending:
                await asyncio.wait(pending, timeout=30)

        def _count_ack(task: asyncio.Task[Any]) -> None:
            if task.cancelled() or task.exception() is not None:
                cell.send_errors += 1
            else:
                cell.acked += 1

        receivers = [asyncio.create_task(receive(c)) for c in clients]
        t0 = time.monotonic()
        t_start_ns = time.monotonic_ns() + int(args.warmup * 1e9)
        t_end = t0 + args.warmup + args.duration
        measuring = True
        senders = [send_loop(a, conv, 1) for a, _, conv in pairs]
        senders += [send_loop(owner, conv, len(rest)) for owner, rest, conv in groups]
        await asyncio.gather(*senders)
        # let in-flight deliveries land (counted only if they were sent inside the window)
        await asyncio.sleep(min(5.0, 1.0 + args.duration / 10))
        cell.duration_s = args.duration
        for r in receivers:
            r.cancel()
        cell.server = await server_view(urls)
        return cell
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


# ---------------------------------------------------------------- results
def git_sha() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "nogit"


def summarize(cells: list[dict[str, Any]]) -> dict[str, Any]:
    arms: dict[str, list[dict[str, Any]]] = {}
    for c in cells:
        arms.setdefault(c["arm"], []).append(c)

    def med(values: list[float | None]) -> float | None:
        vals = [v for v in values if v is not None]
        return statistics.median(vals) if vals else None

    out: dict[str, Any] = {}
    for arm, cs in arms.items():
        out[arm] = {
            "repeats": len(cs),
            "nodes": cs[0]["nodes"],
            "p50_ms": med([c["latency_ms"]["p50"] for c in cs]),
            "p99_ms": med([c["latency_ms"]["p99"] for c in cs]),
            "deliveries_per_s": med([c["deliveries_per_s"] for c in cs]),
            "delivered_ratio": med([c["delivered_ratio"] for c in cs]),
        }
    single = out.get("single")
    if single:
        for arm, s in out.items():
            if arm == "single":
                continue
            s["vs_single"] = {
                k: (s[k] / single[k]) if s[k] is not None and single[k] else None
                for k in ("p50_ms", "p99_ms", "deliveries_per_s")
            }
    return out


def print_table(summary: dict[str, Any]) -> None:
    print(
        f"{'arm':10} {'nodes':>5} {'p50 ms':>8} {'p99 ms':>8} {'deliv/s':>9} {'deliv%':>7}  vs single (p50, p99, rate)"
    )
    for arm, s in summary.items():
        vs = s.get("vs_single")
        ratio = "" if not vs else "  ".join(f"{v:.2f}x" if v else "-" for v in vs.values())
        print(
            f"{arm:10} {s['nodes']:>5} {_fmt(s['p50_ms'])} {_fmt(s['p99_ms'])} {_fmt(s['deliveries_per_s'], 9, 0)}"
            f" {_fmt(100 * s['delivered_ratio'] if s['delivered_ratio'] is not None else None, 7, 2)}  {ratio}"
        )


def _fmt(v: float | None, width: int = 8, digits: int = 1) -> str:
    return f"{v:>{width}.{digits}f}" if v is not None else f"{'-':>{width}}"


# ---------------------------------------------------------------- main
def add_broker_args(p: argparse.ArgumentParser) -> None:
    """Where the brokers of the bus arms are (this benchmark's and bus_transit's), from WSIM_BENCH_* by default."""
    p.add_argument("--redis-url", default=os.environ.get("WSIM_BENCH_REDIS", "redis://127.0.0.1:6379/0"))
    p.add_argument(
        "--amqp-url", default=os.environ.get("WSIM_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
    )
    p.add_argument("--mqtt-host", default=os.environ.get("WSIM_BENCH_MQTT_HOST", "127.0.0.1"))
    p.add_argument("--mqtt-port", type=int, default=int(os.environ.get("WSIM_BENCH_MQTT_PORT", "1883")))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cluster_bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--buses", nargs="+", choices=BUSES, default=list(BUSES))
    p.add_argument("--no-single", action="store_true", help="skip the one-node reference arm")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--urls", nargs="+", help="drive running nodes instead of starting clusters")
    p.add_argument("--label", default="external", help="arm name for --urls")
    p.add_argument("--config", help="base YAML settings for the started nodes")
    p.add_argument("--pairs", type=int, default=20, help="direct-chat sender/receiver pairs")
    p.add_argument("--groups", type=int, default=4)
    p.add_argument("--group-size", type=int, default=6)
    p.add_argument("--rate", type=float, default=10.0, help="messages per second per sender")
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds per cell")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--repeats", type=int, default=3)
    add_broker_args(p)
    p.add_argument("--out", default="reports")
    return p


async def run(args: argparse.Namespace) -> Path:
    started = datetime.now(UTC)
    folder = (
        Path(args.out)
        / "cluster_bench"
        / f"{started:%Y%m%dT%H%M%SZ}-{git_sha() if not args.urls else args.label}"
    )
    (folder / "cells").mkdir(parents=True, exist_ok=True)
    cells: list[dict[str, Any]] = []
    resolved: dict[str, Any] = {"args": vars(args), "arms": {}}
    arms = [args.label] if args.urls else ([] if args.no_single else ["single"]) + list(args.buses)
    with tempfile.TemporaryDirectory(prefix="wsim-bench-") as tmp:
        for repeat in range(args.repeats):
            for arm in arms:  # arms interleaved per repeat: slow drift of a noisy machine hits every arm
                print(f"[{arm} r{repeat}] starting", flush=True)
                if args.urls:
                    cell = await run_cell(list(args.urls), arm, repeat, args)
                else:
                    async with local_arm(arm, args, Path(tmp) / f"r{repeat}") as (urls, settings):
                        resolved["arms"][arm] = settings.model_dump(mode="json")
                        cell = await run_cell(urls, arm, repeat, args)
                summary = cell.summary()
                cells.append(summary)
                (folder / "cells" / f"{arm}-r{repeat}.json").write_text(json.dumps(summary, indent=2))
                lat = summary["latency_ms"]
                print(
                    f"[{arm} r{repeat}] p50 {lat['p50']} ms p99 {lat['p99']} ms, "
                    f"{summary['deliveries_per_s']:.0f} deliveries/s, delivered {summary['delivered_ratio']}",
                    flush=True,
                )
    summary = summarize(cells)
    (folder / "config.resolved.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    (folder / "metadata.json").write_text(
        json.dumps(
            {
                "kind": "cluster_bench",
                "experiment": "cluster_bus",
                "started": started.isoformat(),
                "finished": datetime.now(UTC).isoformat(),
                "git": git_sha(),
                "python": sys.version,
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "argv": sys.argv,
                "note": "latency: SDK send() call -> release at the receiver's SDK, one process clock",
            },
            indent=2,
        )
    )
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    print_table(summary)
    print(f"results: {folder}")
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
