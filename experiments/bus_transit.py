"""The bus alone: publish -> handler latency and frames/s per bus kind, without the store or the devices.

``cluster_bench`` measures the whole path (store, bus, sockets, SDK); this isolates the part that differs
between buses. Three bus instances (nodes a, b, c) run in this process against the real brokers; a publishes
envelopes of ``--size`` bytes to b and c, at a fixed rate for the latency phase (open loop) and as fast as a
window of ``--window`` unconfirmed publishes allows for the throughput phase. One process and one clock, so the
figures are a lower bound of what separate processes see (no cross-process scheduling).

    python -m experiments.bus_transit --duration 3 --repeats 1            # proof at small scale
    python -m experiments.bus_transit --duration 20 --repeats 5 --rate 2000 --burst 50000

Results: ``<out>/bus_transit/<UTC time>-<git sha>/`` (metadata.json, cells/*.json, summary.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.clock import SystemClock
from core.metrics import Metrics
from experiments.cluster_bench import add_broker_args, git_sha
from strategies import bus as buses
from strategies.bus.base import Bus
from strategies.bus.config import LocalBusConfig, MqttBusConfig, RabbitmqBusConfig, RedisBusConfig
from strategies.context import StrategyContext

KINDS = ("local", "redis", "rabbitmq", "mqtt")


def config_for(kind: str, prefix: str, args: argparse.Namespace) -> Any:
    if kind == "local":
        return LocalBusConfig()
    key = secrets.token_hex(32)  # the cells' nodes share one config, so one cluster key (frames carry MACs)
    if kind == "redis":
        return RedisBusConfig.model_validate({"url": args.redis_url, "prefix": prefix, "cluster_key": key})
    if kind == "rabbitmq":
        return RabbitmqBusConfig.model_validate({"url": args.amqp_url, "prefix": prefix, "cluster_key": key})
    return MqttBusConfig.model_validate(
        {"host": args.mqtt_host, "port": args.mqtt_port, "prefix": prefix, "cluster_key": key}
    )


class Receiver:
    def __init__(self) -> None:
        self.latencies_ms: list[float] = []
        self.count = 0
        self.gaps = 0
        self.target = 0
        self.reached = asyncio.Event()
        self.last_at = 0.0

    def expect(self, total: int) -> None:
        """Set ``reached`` once ``total`` frames have arrived since the last reset."""
        self.target = total
        if self.count >= total:
            self.reached.set()
        else:
            self.reached.clear()

    async def handler(self, payload: bytes) -> None:
        self.count += 1
        self.last_at = time.monotonic()
        sent_ns = int(payload[:20])
        if sent_ns:
            self.latencies_ms.append((time.monotonic_ns() - sent_ns) / 1e6)
        if self.target and self.count >= self.target:
            self.reached.set()

    async def on_gap(self, reason: str) -> None:
        self.gaps += 1


async def all_arrived(receivers: list[Receiver], total: int, timeout: float) -> None:
    for r in receivers:
        r.expect(total)
    waiters = [asyncio.ensure_future(r.reached.wait()) for r in receivers]
    _, pending = await asyncio.wait(waiters, timeout=timeout)
    for w in pending:
        w.cancel()


def _payload(size: int, stamp: bool) -> bytes:
    head = f"{time.monotonic_ns() if stamp else 0:020d}".encode()
    return head + b"x" * max(0, size - len(head))


def _pct(values: list[float], q: float) -> float | None:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else None


async def run_cell(kind: str, repeat: int, args: argparse.Namespace) -> dict[str, Any]:
    prefix = f"wsimtransit_{secrets.token_hex(3)}"
    names = ["a"] if kind == "local" else ["a", "b", "c"]
    targets = ["a"] if kind == "local" else ["b", "c"]
    nodes: dict[str, tuple[Bus, Receiver]] = {}
    config = config_for(kind, prefix, args)
    for name in names:
        ctx = StrategyContext(SystemClock(), Metrics(), Path(), name)
        bus = buses.REGISTRY.create(config, ctx)
        rx = Receiver()
        await bus.start(name, rx.handler, rx.on_gap)
        nodes[name] = (bus, rx)
    try:
        pub = nodes["a"][0]
        receivers = [nodes[t][1] for t in targets]
        # latency: fixed rate, open loop
        interval = 1.0 / args.rate
        end = time.monotonic() + args.duration
        nxt = time.monotonic()
        inflight: set[asyncio.Task[None]] = set()
        sent = 0
        while time.monotonic() < end:
            task = asyncio.create_task(pub.publish(_payload(args.size, True), targets))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
            sent += 1
            nxt += interval
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))
        if inflight:
            await asyncio.wait(inflight, timeout=30)
        await all_arrived(receivers, sent, timeout=10)
        latencies = [v for r in receivers for v in r.latencies_ms]
        received_latency_phase = sum(r.count for r in receivers)
        # throughput: a window of unconfirmed publishes, as fast as the broker takes them
        for r in receivers:
            r.count = r.target = 0
        sem = asyncio.Semaphore(args.window)
        payload = _payload(args.size, False)

        async def one() -> None:
            async with sem:
                await pub.publish(payload, targets)

        t0 = time.monotonic()
        await asyncio.gather(*(one() for _ in range(args.burst)))
        await all_arrived(receivers, args.burst, timeout=30)
        # up to the last arrival: frames a broker dropped must not stretch the time (they count in the ratio)
        elapsed = max(r.last_at for r in receivers) - t0
        received = sum(r.count for r in receivers)
        return {
            "kind": kind,
            "repeat": repeat,
            "targets": len(targets),
            "size_bytes": args.size,
            "latency_ms": {
                "p50": _pct(latencies, 0.5),
                "p99": _pct(latencies, 0.99),
                "count": len(latencies),
            },
            "latency_phase_delivered_ratio": received_latency_phase / (sent * len(targets)) if sent else None,
            "frames_per_s": received / elapsed if elapsed else None,
            "burst_delivered_ratio": received / (args.burst * len(targets)),
            "gaps": sum(r.gaps for r in receivers),
        }
    finally:
        for bus, _ in nodes.values():
            await bus.close()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bus_transit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    p.add_argument("--size", type=int, default=400, help="envelope bytes (a text message.new is ~300-500)")
    p.add_argument("--rate", type=float, default=500.0, help="envelopes per second in the latency phase")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--burst", type=int, default=20_000, help="envelopes in the throughput phase")
    p.add_argument("--window", type=int, default=256, help="unconfirmed publishes at once (throughput phase)")
    p.add_argument("--repeats", type=int, default=3)
    add_broker_args(p)
    p.add_argument("--out", default="reports")
    return p


async def run(args: argparse.Namespace) -> Path:
    started = datetime.now(UTC)
    folder = Path(args.out) / "bus_transit" / f"{started:%Y%m%dT%H%M%SZ}-{git_sha()}"
    (folder / "cells").mkdir(parents=True, exist_ok=True)
    cells = []
    for repeat in range(args.repeats):
        for kind in args.kinds:
            cell = await run_cell(kind, repeat, args)
            cells.append(cell)
            (folder / "cells" / f"{kind}-r{repeat}.json").write_text(json.dumps(cell, indent=2))
            print(json.dumps(cell), flush=True)
    summary: dict[str, Any] = {}
    for kind in args.kinds:
        cs = [c for c in cells if c["kind"] == kind]
        summary[kind] = {
            "repeats": len(cs),
            "p50_ms": statistics.median(c["latency_ms"]["p50"] for c in cs),
            "p99_ms": statistics.median(c["latency_ms"]["p99"] for c in cs),
            "frames_per_s": statistics.median(c["frames_per_s"] for c in cs),
            "gaps": sum(c["gaps"] for c in cs),
        }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    (folder / "metadata.json").write_text(
        json.dumps(
            {
                "experiment": "bus_transit",
                "started": started.isoformat(),
                "git": git_sha(),
                "python": sys.version,
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "argv": sys.argv,
                "args": vars(args),
            },
            indent=2,
        )
    )
    print(f"{'kind':9} {'p50 ms':>8} {'p99 ms':>8} {'frames/s':>10}")
    for kind, s in summary.items():
        print(f"{kind:9} {s['p50_ms']:8.3f} {s['p99_ms']:8.3f} {s['frames_per_s']:10.0f}")
    print(f"results: {folder}")
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    asyncio.run(run(build_parser().parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
