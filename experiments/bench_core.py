"""Core benchmark of one node on the embedded default (SQLite, in-process bus/cache/dedup), measured side by
side with the same-stack ceiling (a bare echo and a bare broadcast server on FastAPI + uvicorn websockets-sansio).

    python experiments/bench_core.py --scale quick --repeat 3     # ~3 minutes: 500 connections
    python experiments/bench_core.py                              # full scale: 10,000 connections, then 19,000 held
    python experiments/bench_core.py --scale quick --profile      # plus a py-spy profile of the server under 1:1

One invocation runs, on one wsim server process and one ceiling server process (both pinned to one core with
``taskset``, the swarm workers to the other cores):
1. idle connections one server process holds, and its memory per connection (RSS delta / connections);
2. push latency at fixed offered loads (open loop, ``--open-rates`` messages/s in total, Poisson think time)
   with every connection open: send->deliver p50/p99/p99.9. This is the figure for "push latency < 100 ms": a
   closed loop measures capacity, and its latency is queueing by construction;
3. ``--repeat`` rounds of four interleaved phases, so each ratio compares neighbours in time: bare echo, wsim 1:1
   (closed loop: each sender keeps ``--window`` sends awaiting their ack), bare broadcast, wsim group fan-out
   (a ``--group-size`` member group). Server CPU per message is the server process's own CPU time (user + system,
   every thread, from /proc via psutil) over the phase, divided by the messages (or deliveries) of the phase;
4. at full scale, 19,000 authenticated connections held with heartbeats (``--hold-connections``), memory each;
5. the longest garbage-collector pause and the pauses over 20 ms, from the server's /metrics.

Medians over the repetitions are reported, every repetition is kept (``repetitions``, ``details``). Results go
to reports/bench_core/<UTC>-<sha>/result.json and report.md with the environment; docs/performance.md says what
each figure means. The swarm's sockets are spread over several 127.0.0.x source addresses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx
import psutil

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.analysis import prom
from experiments.harness.config import ExperimentError, parse_set, set_path
from experiments.harness.environment import ROOT, metadata, run_dir
from experiments.harness.server import ServerProcess
from experiments.load.ceiling import CeilingServer
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


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process (all its threads) so far: what it cost, whatever else ran."""
    if pid is None:
        return 0.0
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def server_settings(items: Iterable[str]) -> dict[str, Any]:
    """``BENCH_SERVER`` with ``--server-set`` items applied, parsed and set as the experiment files' ``--set``
    (``strategies.<kind>=name`` shorthand included)."""
    data: dict[str, Any] = {"server": copy.deepcopy(BENCH_SERVER)}
    for key, value in parse_set(list(items)).items():
        set_path(data, f"server.{key}", value)
    out: dict[str, Any] = data["server"]
    return out


def cpu_by_thread(pid: int | None) -> dict[str, float]:
    """CPU seconds per kind of thread (the event loop, each SQLite thread, the rest), so a figure per message can
    say how much of it is the store's writer thread and how much the event loop."""
    if pid is None:
        return {}
    out: dict[str, float] = {}
    proc = psutil.Process(pid)
    for t in proc.threads():
        if t.id == pid:
            name = "event_loop"
        else:
            try:
                comm = Path(f"/proc/{pid}/task/{t.id}/comm").read_text().strip()
            except OSError:
                comm = "other"
            name = comm.rstrip("0123456789").rstrip("_-") if comm.startswith("sqlite-") else "other"
        out[name] = out.get(name, 0.0) + t.user_time + t.system_time
    return out


def _by_thread(phase: Mapping[str, Any]) -> str:
    split = phase.get("server_cpu_us_per_msg_by_thread") or {}
    return ", ".join(f"{name} {us:.1f} us" for name, us in split.items() if us >= 0.05) or "n/a"


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
    cpu_before = cpu_seconds(server.pid)
    threads_before = cpu_by_thread(server.pid)
    runs = await pool.call(lambda i: {"cmd": "run", "start_at_ns": start_at, "senders": senders, "seed": i})
    cpu_s = cpu_seconds(server.pid) - cpu_before
    threads_after = cpu_by_thread(server.pid)
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
    retries = prom.delta(before, after, "wsim_delivery_retries_total")
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
        # the server process's own CPU time (every thread) from just before the load to the end of the drain
        "server_cpu_s": cpu_s,
        "server_cpu_us_per_msg": cpu_s * 1e6 / acked if acked else None,
        "server_cpu_us_per_delivery": cpu_s * 1e6 / delivered if delivered else None,
        "redeliveries_per_msg": retries / acked if acked else None,
        # the same CPU split by thread: the event loop, the SQLite writer/reader threads, the rest
        "server_cpu_us_per_msg_by_thread": {
            name: (threads_after[name] - threads_before.get(name, 0.0)) * 1e6 / acked
            for name in sorted(threads_after)
        }
        if acked
        else None,
        "server": {
            "messages_stored": prom.delta(before, after, "wsim_messages_stored_total"),
            "messages_stored_per_s": prom.delta(before, after, "wsim_messages_stored_total") / duration,
            "frames_out_per_s": prom.delta(before, after, "wsim_frames_out_total") / duration,
            "send_ack_ms": prom.histogram_summary(before, after, "wsim_send_ack_seconds"),
            "send_deliver_ms": prom.histogram_summary(before, after, "wsim_send_deliver_seconds"),
            "retries": retries,
            # collector pauses during the phase: (count, total ms) per generation
            "gc_pauses": _gc_delta(before, after),
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


# ------------------------------------------------------------------ pinning
def plan_pinning() -> dict[str, Any]:
    """Server processes on the first core this process may use, the load on the others (one core: shared)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return {"server_cpus": None, "load_cpus": None, "note": f"{len(cpus)} core: server and load share it"}
    if shutil.which("taskset") is None:
        return {"server_cpus": None, "load_cpus": None, "note": "taskset not found: nothing pinned"}
    return {
        "server_cpus": cpus[:1],
        "load_cpus": cpus[1:],
        "note": f"servers on CPU {cpus[0]}, load on CPU {','.join(map(str, cpus[1:]))} (taskset -a -cp)",
    }


def pin(pid: int | None, cpus: list[int] | None) -> None:
    """``taskset -a``: every thread of the process (the SQLite writer thread is part of the server's cost)."""
    if pid is None or not cpus:
        return
    subprocess.run(
        ["taskset", "-a", "-cp", ",".join(map(str, cpus)), str(pid)], check=True, capture_output=True
    )


def split(total: int, parts: int) -> list[int]:
    """``total`` spread over ``parts`` (the first ones get the remainder)."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


# ------------------------------------------------------------------ phases
async def _ceiling_phase(
    pool: WorkerPool, ceiling: CeilingServer, name: str, senders: int, window: int, args: argparse.Namespace
) -> dict[str, Any]:
    """One closed-loop run against the bare server: ``senders`` connections keep ``window`` frames in flight."""
    per_worker = split(senders, pool.count)
    start_at = time.time_ns() + 300_000_000
    cpu_before = cpu_seconds(ceiling.pid)
    runs = await pool.call(
        lambda i: {
            "cmd": "ceiling_run",
            "name": name,
            "senders": per_worker[i],
            "window": window,
            "duration_s": args.duration_s,
            "start_at_ns": start_at,
            "text_bytes": args.text_bytes,
        }
    )
    cpu_s = cpu_seconds(ceiling.pid) - cpu_before
    completed = sum(r["completed"] for r in runs)
    delivered = sum(r["delivered"] for r in runs)
    return {
        "duration_s": args.duration_s,
        "senders": senders,
        "window": window,
        "completed": completed,
        "completed_per_s": completed / args.duration_s,
        "delivered": delivered,
        "delivered_per_s": delivered / args.duration_s,
        "lost_in_flight": sum(r["lost_in_flight"] for r in runs),
        "round_trip_ms": percentiles_ms(merge_histograms([r["rtt_hist"] for r in runs])),
        "server_cpu_s": cpu_s,
        "server_cpu_us_per_msg": cpu_s * 1e6 / completed if completed else None,
        "server_cpu_us_per_delivery": cpu_s * 1e6 / delivered if delivered else None,
    }


def _gc_delta(before: prom.Samples, after: prom.Samples) -> dict[str, dict[str, float]]:
    """Collector pauses between two scrapes, per generation: how many, their total, and how many over 20 ms, in
    wall time and in the collecting thread's CPU time (``cpu_*``; absent from servers that predate it)."""
    out: dict[str, dict[str, float]] = {}
    for g in ("0", "1", "2"):
        count = prom.delta(before, after, "wsim_gc_pause_seconds_count", generation=g)
        out[g] = {"count": count}
        for key, name in (("", "wsim_gc_pause_seconds"), ("cpu_", "wsim_gc_pause_cpu_seconds")):
            b = prom.histogram_buckets(before, name, generation=g)
            a = prom.histogram_buckets(after, name, generation=g)
            if not a:
                continue
            under = [a[le] - b.get(le, 0.0) for le in a if le <= 0.02]
            out[g][f"{key}total_ms"] = prom.delta(before, after, f"{name}_sum", generation=g) * 1000
            out[g][f"{key}over_20ms"] = count - (max(under) if under else 0.0)
    return out


async def _connect(
    pool: WorkerPool, args: argparse.Namespace, limits: list[int] | None, rate_per_s: float | None = None
) -> dict[str, Any]:
    t0 = time.monotonic()
    rate = (rate_per_s or args.connect_rate) / pool.count
    conns = await pool.call(
        lambda i: {
            "cmd": "connect",
            "rate_per_s": rate,
            "timeout_s": 600,
            **({"limit": limits[i]} if limits is not None else {}),
        }
    )
    return {
        "connected": sum(c["connected"] for c in conns),
        "failed": sum(c["failed"] for c in conns),
        "connect_s": time.monotonic() - t0,
    }


async def _held(pool: WorkerPool, server: ServerProcess) -> dict[str, Any]:
    stats = await pool.call(lambda _: {"cmd": "stats"})
    samples = prom.parse(await server.metrics_text())
    return {
        "still_connected": sum(s["stats"]["online"] for s in stats),
        "server_gauge_connections": prom.total(samples, "wsim_connections"),
        "rss_bytes": server.rss_bytes(),
        # why a connection was not held: failed attempts and the close codes the clients saw
        "connect_failures": sum(s["stats"]["connect_failures"] for s in stats),
        "close_codes": _sum_counts(s["stats"]["closes"] for s in stats),
    }


def _py_spy() -> str | None:
    found = shutil.which("py-spy")
    if found:
        return found
    beside = Path(sys.executable).parent / "py-spy"  # the venv's, when the venv is not activated
    return str(beside) if beside.exists() else None


async def _profiled_one_to_one(
    pool: WorkerPool,
    server: ServerProcess,
    workload: Workload,
    senders: list[int],
    out: Path,
    pinning: dict[str, Any],
) -> dict[str, Any]:
    """An extra 1:1 run (not in the medians: sampling slows the server) under ``py-spy record``."""
    spy = _py_spy()
    if spy is None:
        return {"profile": None, "note": "py-spy not installed (pip install py-spy)"}
    target = out / "profile-one_to_one.speedscope.json"
    log = out / "py-spy.log"
    with log.open("wb") as fh:
        proc = await asyncio.create_subprocess_exec(
            spy, "record", "--pid", str(server.pid), "--rate", "100", "--format", "speedscope",
            "--duration", str(math.ceil(workload.duration_s + 1)), "--output", str(target),
            stdout=fh, stderr=fh,
        )  # fmt: skip
    pin(proc.pid, pinning["load_cpus"])
    phase = await _phase(pool, server, workload, senders)
    try:
        code = await asyncio.wait_for(proc.wait(), workload.duration_s + 60)
    except TimeoutError:
        proc.kill()
        code = await proc.wait()
    if code != 0 or not target.exists():
        return {"profile": None, "note": f"py-spy exited with {code}: see {log}", "phase": phase}
    return {"profile": str(target), "note": "open in https://www.speedscope.app", "phase": phase}


def _gc_line(pauses: Mapping[str, Mapping[str, float]]) -> str:
    def cpu(v: Mapping[str, float]) -> str:
        if "cpu_total_ms" not in v:
            return ""
        return f"; CPU {v['cpu_over_20ms']:.0f} > 20 ms, {v['cpu_total_ms']:.0f} ms"

    return "GC " + ", ".join(
        f"gen{g} {v['count']:.0f} pauses ({v.get('over_20ms', 0):.0f} > 20 ms, {v.get('total_ms', 0):.0f} ms in all"
        f"{cpu(v)})"
        for g, v in pauses.items()
    )


def _gc(samples: prom.Samples) -> dict[str, Any]:
    """Pauses over the server's life in this run (registration, ramps and every phase)."""
    buckets = prom.histogram_buckets(samples, "wsim_gc_pause_seconds")
    total = max(buckets.values(), default=0.0)
    under = max((v for le, v in buckets.items() if le <= 0.02), default=0.0)
    longest = prom.by_label(samples, "wsim_gc_pause_max_seconds", "generation")
    if longest:
        max_ms: float | None = max(longest.values()) * 1000
        how = "wsim_gc_pause_max_seconds"
    else:  # a server without the gauge: the upper bound of the highest bucket that has a pause
        edges = sorted(buckets)
        top = [
            le
            for prev, le in zip([-1.0, *edges], edges, strict=False)
            if buckets[le] > buckets.get(prev, 0.0)
        ]
        finite = [le for le in edges if math.isfinite(le)]
        if top and not math.isfinite(top[-1]):  # beyond the last bound: only a lower bound is known
            max_ms, how = finite[-1] * 1000, "lower bound: the last finite wsim_gc_pause_seconds bucket"
        else:
            max_ms, how = (
                (top[-1] * 1000 if top else 0.0),
                "upper bound of the highest wsim_gc_pause_seconds bucket",
            )
    return {"max_pause_ms": max_ms, "pauses_over_20ms": total - under, "pauses": total, "max_from": how}


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _ratio(a: Any, b: Any) -> float | None:
    x, y = _num(a), _num(b)
    return x / y if x is not None and y else None


async def bench(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    n = args.connections
    hold_n = max(args.hold_connections, 0)
    users = max(n, hold_n)
    pair_users = min(args.pair_users, n)
    group_size = min(args.group_size, n)
    pinning = plan_pinning()
    _say(f"pinning: {pinning['note']}")
    with tempfile.TemporaryDirectory(prefix="wsim-bench-", dir=args.data_dir) as tmp:
        server = ServerProcess(server_settings(args.server_set), Path(tmp), "bench")
        ceiling = CeilingServer(Path(tmp) / "ceiling.log")
        pool = WorkerPool(args.workers, Path(tmp) / "workers")
        try:
            await asyncio.gather(server.start(), ceiling.start())
            _say(f"wsim pid {server.pid} on {server.url}, ceiling pid {ceiling.pid}; preparing {users} users")
            pop = Population(
                users=users,
                social_users=max(pair_users, 2),
                friends_per_user=2,
                groups=1,
                group_size=group_size,
                workers=args.workers,
                setup_concurrency=32,
            )
            # the swarm processes start (imports take seconds on a busy machine) while the users register
            creds, _ = await asyncio.gather(prepare_population(server.url, pop, progress=_say), pool.start())
            addrs = source_addresses(users, args.source_addresses)
            await pool.setup(server.ws_url, creds, addrs, Workload().model_dump())
            await asyncio.sleep(1.0)  # let registration's garbage settle before the memory baseline
            rss_before = server.rss_bytes()
            _say(f"connecting {n} sockets from {len(addrs)} source addresses, {args.workers} swarm processes")
            # the swarm's shards are creds[i::workers]: the first n users are range(i, n, workers) of worker i
            ramp_before = prom.parse(await server.metrics_text())
            conn = await _connect(pool, args, [len(range(i, n, args.workers)) for i in range(args.workers)])
            ramp_gc = _gc_delta(ramp_before, prom.parse(await server.metrics_text()))
            _say(f"{conn['connected']} connected ({conn['failed']} failed) in {conn['connect_s']:.1f} s")
            await asyncio.sleep(args.hold_s)
            held = await _held(pool, server)
            idle = {
                "connections_target": n,
                "connected": conn["connected"],
                "still_connected_after_hold": held["still_connected"],
                "server_gauge_connections": held["server_gauge_connections"],
                "connect_s": conn["connect_s"],
                "hold_s": args.hold_s,
                "rss_before_bytes": rss_before,
                "rss_after_bytes": held["rss_bytes"],
                "bytes_per_connection": (held["rss_bytes"] - rss_before) / max(1, conn["connected"]),
                "connect_failures": held["connect_failures"],
                "close_codes": held["close_codes"],
                "source_addresses": addrs,
                "ramp_gc_pauses": ramp_gc,
            }
            _say(f"idle: {held['still_connected']} held, {idle['bytes_per_connection'] / 1024:.1f} KiB each")
            _say(f"ramp: {_gc_line(ramp_gc)}")
            # Pinned from here on (set-up and the ramp use every core: registration's argon2 is slow work).
            pin(server.pid, pinning["server_cpus"])
            pin(ceiling.pid, pinning["server_cpus"])
            for proc in pool.procs:
                pin(proc.pid, pinning["load_cpus"])

            for name, url, count in (
                ("echo", ceiling.url("/echo"), pair_users),
                ("broadcast", ceiling.url("/broadcast"), group_size),
            ):
                per_worker = split(count, args.workers)

                def ceiling_connect(
                    i: int, name: str = name, url: str = url, per: list[int] = per_worker
                ) -> dict[str, Any]:
                    return {
                        "cmd": "ceiling_connect",
                        "worker": i,
                        "name": name,
                        "url": url,
                        "count": per[i],
                        "source_addrs": addrs,
                    }

                await pool.call(ceiling_connect)

            open_loop: list[dict[str, Any]] = []
            for rate in args.open_rates:
                load = Workload(
                    duration_s=args.duration_s,
                    rate_per_user_per_s=rate / pair_users,
                    group_fraction=args.open_group_fraction,
                    text_bytes=args.text_bytes,
                    read_every=10,
                    drain_s=args.drain_s,
                    drain_quiet_s=args.drain_quiet_s,
                )
                _say(
                    f"open loop: {rate:,.0f} msgs/s offered by {pair_users} of {n} users, {args.duration_s} s"
                )
                phase = await _repeated(pool, server, load, list(range(pair_users)), args.repeat)
                phase["offered_per_s"] = rate
                phase["connections"] = held["still_connected"]
                phase["group_fraction"] = args.open_group_fraction
                open_loop.append(phase)
                _say(
                    f"open loop {rate:,.0f}/s: send->deliver p50 {_fmt(phase['send_deliver_ms']['p50'], ' ms')}, "
                    f"p99 {_fmt(phase['send_deliver_ms']['p99'], ' ms')}"
                )

            closed_loop: dict[str, Any] = {
                "duration_s": args.duration_s,
                "text_bytes": args.text_bytes,
                "read_every": 0,
                "drain_s": args.drain_s,
                "drain_quiet_s": args.drain_quiet_s,
            }
            direct = Workload(window=args.window, group_fraction=0.0, **closed_loop)
            group = Workload(window=args.group_window, group_fraction=1.0, **closed_loop)
            pair_senders = list(range(pair_users))
            group_senders = list(range(min(args.group_senders, group_size)))
            rounds: dict[str, list[dict[str, Any]]] = {
                "echo": [],
                "one_to_one": [],
                "broadcast": [],
                "fanout": [],
            }
            for r in range(args.repeat):
                _say(f"round {r + 1}/{args.repeat}: echo, 1:1, broadcast, fan-out ({args.duration_s} s each)")
                echo = await _ceiling_phase(pool, ceiling, "echo", pair_users, args.window, args)
                one = await _phase(pool, server, direct, pair_senders)
                bcast = await _ceiling_phase(
                    pool, ceiling, "broadcast", len(group_senders), args.group_window, args
                )
                fan = await _phase(pool, server, group, group_senders)
                fan["group_size"] = group_size
                for key, phase in (
                    ("echo", echo),
                    ("one_to_one", one),
                    ("broadcast", bcast),
                    ("fanout", fan),
                ):
                    rounds[key].append(phase)
                _say(
                    f"  echo {echo['completed_per_s']:,.0f}/s at {_fmt(echo['server_cpu_us_per_msg'], ' us')}; "
                    f"1:1 {one['acked_per_s']:,.0f}/s at {_fmt(one['server_cpu_us_per_msg'], ' us')}, "
                    f"{_fmt(one['redeliveries_per_msg'])} redeliveries/msg; "
                    f"broadcast {_fmt(bcast['server_cpu_us_per_delivery'], ' us')}/delivery; "
                    f"fan-out {fan['delivered_per_s']:,.0f}/s at {_fmt(fan['server_cpu_us_per_delivery'], ' us')}"
                )
                _say(f"  1:1 server CPU per message by thread: {_by_thread(one)}")

            profile: dict[str, Any] | None = None
            if args.profile:
                _say("profile: one more 1:1 run under py-spy record (not in the medians)")
                profile = await _profiled_one_to_one(pool, server, direct, pair_senders, out, pinning)
                _say(f"profile: {profile['profile'] or profile['note']}")

            hold: dict[str, Any] | None = None
            if hold_n > n:
                hold = await _hold(pool, server, args, conn, held, rss_before, hold_n, n)
            gc = _gc(prom.parse(await _metrics_when_answering(server)))
            cpu = [s.cpu_percent for s in server.samples]
        finally:
            try:
                await pool.call(lambda _: {"cmd": "ceiling_close"})
            except Exception as exc:  # a dead worker's log says why
                _say(f"ceiling connections not closed cleanly: {exc}")
            await pool.close()
            await ceiling.stop()
            await server.stop()
            with contextlib.suppress(OSError):  # what the server logged (a failed phase's explanation)
                (out / "server.log").write_bytes(server.log_path.read_bytes()[-500_000:])
    return summarize(args, rounds, open_loop, idle, hold, gc, pinning, profile, cpu)


async def _metrics_when_answering(server: ServerProcess, wait_s: float = 120.0) -> str:
    """/metrics, waiting for a server that is still busy (e.g. after a connection ramp at its limit)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return await server.metrics_text()
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(2.0)


async def _hold(
    pool: WorkerPool,
    server: ServerProcess,
    args: argparse.Namespace,
    conn: dict[str, Any],
    held: dict[str, Any],
    rss_before: int,
    hold_n: int,
    n: int,
) -> dict[str, Any]:
    """Connect up to ``hold_n`` and hold them with heartbeats. A server that stops answering here (the phase runs
    close to the process's file-descriptor limit) is a result, recorded with what was measured, not a crash that
    loses the rounds before it."""
    before_more = held["rss_bytes"]
    _say(
        f"hold: connecting {hold_n - n} more at {args.hold_connect_rate:g}/s, holding {hold_n} for {args.hold_phase_s} s"
    )
    out: dict[str, Any] = {
        "connections_target": hold_n,
        "hold_s": args.hold_phase_s,
        "connect_rate_per_s": args.hold_connect_rate,
        "error": None,
    }
    try:
        more_before = prom.parse(await server.metrics_text())
        more = await _connect(pool, args, None, args.hold_connect_rate)
        out["connected"] = conn["connected"] + more["connected"]
        try:
            more_gc = _gc_delta(more_before, prom.parse(await server.metrics_text()))
        except httpx.HTTPError as exc:
            more_gc = {}
            out["error"] = f"/metrics did not answer after the ramp: {type(exc).__name__}"
            _say(f"hold: {out['error']}; holding anyway")
        await asyncio.sleep(args.hold_phase_s)
        now_held = await _held(pool, server)
    except (httpx.HTTPError, OSError, RuntimeError) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        _say(f"hold: failed: {out['error']} (server.log in the run folder)")
        return out
    out.update(
        still_connected_after_hold=now_held["still_connected"],
        server_gauge_connections=now_held["server_gauge_connections"],
        rss_bytes=now_held["rss_bytes"],
        bytes_per_connection=(now_held["rss_bytes"] - rss_before) / max(1, now_held["still_connected"]),
        # the extra connections alone (the phases above left their own heap behind)
        marginal_bytes_per_connection=(now_held["rss_bytes"] - before_more)
        / max(1, now_held["still_connected"] - held["still_connected"]),
        connect_failures=now_held["connect_failures"],
        close_codes=now_held["close_codes"],
        ramp_gc_pauses=more_gc,
    )
    _say(
        f"hold: {now_held['still_connected']} held, {out['bytes_per_connection'] / 1024:.1f} KiB per connection"
    )
    if more_gc:
        _say(f"hold ramp: {_gc_line(more_gc)}")
    return out


def summarize(
    args: argparse.Namespace,
    rounds: dict[str, list[dict[str, Any]]],
    open_loop: list[dict[str, Any]],
    idle: dict[str, Any],
    hold: dict[str, Any] | None,
    gc: dict[str, Any],
    pinning: dict[str, Any],
    profile: dict[str, Any] | None,
    cpu: list[float],
) -> dict[str, Any]:
    """The headline figures (medians of the rounds) with every round kept; ratios pair each wsim phase with the
    ceiling phase run just before it, then take the median."""
    per_round: dict[str, list[dict[str, Any]]] = {"ceiling": [], "one_to_one": [], "fanout": [], "ratios": []}
    for echo, one, bcast, fan in zip(
        rounds["echo"], rounds["one_to_one"], rounds["broadcast"], rounds["fanout"], strict=True
    ):
        per_round["ceiling"].append(
            {
                "echo_msgs_per_s": echo["completed_per_s"],
                "echo_cpu_us_per_msg": echo["server_cpu_us_per_msg"],
                "broadcast_cpu_us_per_delivery": bcast["server_cpu_us_per_delivery"],
            }
        )
        per_round["one_to_one"].append(
            {
                "msgs_per_s": one["acked_per_s"],
                "server_cpu_us_per_msg": one["server_cpu_us_per_msg"],
                "redeliveries_per_msg": one["redeliveries_per_msg"],
                "send_deliver_p50_ms": one["send_deliver_ms"]["p50"],
                "send_deliver_p99_ms": one["send_deliver_ms"]["p99"],
            }
        )
        per_round["fanout"].append(
            {
                "deliveries_per_s": fan["delivered_per_s"],
                "server_cpu_us_per_delivery": fan["server_cpu_us_per_delivery"],
            }
        )
        per_round["ratios"].append(
            {
                "cpu_per_msg_vs_echo": _ratio(one["server_cpu_us_per_msg"], echo["server_cpu_us_per_msg"]),
                "cpu_per_delivery_vs_broadcast": _ratio(
                    fan["server_cpu_us_per_delivery"], bcast["server_cpu_us_per_delivery"]
                ),
            }
        )
    open_rows = []
    open_runs = []
    for phase in open_loop:
        runs = [
            {
                "rate": phase["offered_per_s"],
                "connections": phase["connections"],
                "send_deliver_p50_ms": r["send_deliver_ms"]["p50"],
                "send_deliver_p99_ms": r["send_deliver_ms"]["p99"],
                "send_deliver_p999_ms": r["send_deliver_ms"]["p99_9"],
            }
            for r in phase["runs"]
        ]
        open_runs.append(runs)
        open_rows.append(median_of(runs))
    return {
        "benchmark": "bench_core",
        "store": "sqlite (embedded default)",
        "scale": args.scale,
        "args": vars(args),
        "repeat": args.repeat,
        "ceiling": median_of(per_round["ceiling"]),
        "one_to_one": median_of(per_round["one_to_one"]),
        "fanout": median_of(per_round["fanout"]),
        "open_loop": open_rows,
        "gc": {"max_pause_ms": gc["max_pause_ms"], "pauses_over_20ms": gc["pauses_over_20ms"]},
        "ratios": median_of(per_round["ratios"]),
        "repetitions": {**per_round, "open_loop": open_runs},
        "idle": idle,
        "hold": hold,
        "gc_detail": gc,
        "pinning": pinning,
        "profile": profile,
        "details": {**rounds, "open_loop": open_loop},
        "server_cpu_percent_median": sorted(cpu)[len(cpu) // 2] if cpu else None,
        "environment": metadata("bench_core"),
    }


def _fmt(v: Any, unit: str = "", digits: int = 1) -> str:
    return "-" if not isinstance(v, (int, float)) else f"{v:,.{digits}f}{unit}"


def report(result: dict[str, Any]) -> str:
    env, idle, hold = result["environment"], result["idle"], result["hold"]
    ceil, one, fan, ratios, gc = (result[k] for k in ("ceiling", "one_to_one", "fanout", "ratios", "gc"))
    args = result["args"]
    lines = [
        f"wsim core benchmark ({result['store']}, scale {result['scale']}) on {env['cpu_count']} x "
        f"{env['cpu_model']}, git {env['git_sha']}; {result['pinning']['note']}",
        "",
        "| figure | value |",
        "|---|---|",
        f"| bare echo, same stack: msgs/s; server CPU per message | {_fmt(ceil['echo_msgs_per_s'], '', 0)}; "
        f"{_fmt(ceil['echo_cpu_us_per_msg'], ' us')} |",
        f"| bare broadcast, same stack: server CPU per delivery | {_fmt(ceil['broadcast_cpu_us_per_delivery'], ' us')} |",
        f"| wsim 1:1 ({args['pair_users']} senders x window {args['window']}): msgs/s; server CPU per message | "
        f"{_fmt(one['msgs_per_s'], '', 0)}; {_fmt(one['server_cpu_us_per_msg'], ' us')} |",
        f"| wsim 1:1: redeliveries per message; send->deliver p50 / p99 | {_fmt(one['redeliveries_per_msg'], '', 3)}; "
        f"{_fmt(one['send_deliver_p50_ms'], ' ms')} / {_fmt(one['send_deliver_p99_ms'], ' ms')} |",
        f"| wsim fan-out ({args['group_size']} members): deliveries/s; server CPU per delivery | "
        f"{_fmt(fan['deliveries_per_s'], '', 0)}; {_fmt(fan['server_cpu_us_per_delivery'], ' us')} |",
        f"| **ratio: CPU per 1:1 message / per echo** | **{_fmt(ratios['cpu_per_msg_vs_echo'], 'x', 2)}** |",
        f"| **ratio: CPU per delivery / per broadcast delivery** | "
        f"**{_fmt(ratios['cpu_per_delivery_vs_broadcast'], 'x', 2)}** |",
        *(
            f"| open loop {o['rate']:,.0f} msgs/s, {o['connections']:,.0f} connections: send->deliver p50 / p99 / "
            f"p99.9 | {_fmt(o['send_deliver_p50_ms'], ' ms')} / {_fmt(o['send_deliver_p99_ms'], ' ms')} / "
            f"{_fmt(o['send_deliver_p999_ms'], ' ms')} |"
            for o in result["open_loop"]
        ),
        f"| idle connections held by one process | {idle['still_connected_after_hold']:,} of "
        f"{idle['connections_target']:,} |",
        f"| memory per idle connection (RSS delta / connections) | {idle['bytes_per_connection'] / 1024:.1f} KiB |",
        *(
            [
                f"| held with heartbeats for {hold['hold_s']:.0f} s | {hold['still_connected_after_hold']:,} of "
                f"{hold['connections_target']:,}; {hold['bytes_per_connection'] / 1024:.1f} KiB each |"
            ]
            if hold and "still_connected_after_hold" in hold
            else []
        ),
        *([f"| hold phase problem | {hold['error']} |"] if hold and hold.get("error") else []),
        f"| GC: longest pause; pauses over 20 ms (whole run, set-up included) | {_fmt(gc['max_pause_ms'], ' ms')}; "
        f"{_fmt(gc['pauses_over_20ms'], '', 0)} |",
        f"| GC during the {idle['connections_target']:,}-connection ramp | {_gc_line(idle['ramp_gc_pauses'])} |",
        *(
            [f"| GC during the hold ramp | {_gc_line(hold['ramp_gc_pauses'])} |"]
            if hold and hold.get("ramp_gc_pauses")
            else []
        ),
        "",
        f"Medians of {result['repeat']} rounds (echo, 1:1, broadcast, fan-out interleaved; ratios per round, then "
        "the median); server CPU is the server process's own CPU time over each phase. Every round is in "
        "result.json under repetitions and details.",
    ]
    return "\n".join(lines)


# Defaults per scale, for every option left unset on the command line.
SCALES: dict[str, dict[str, Any]] = {
    "full": {
        "connections": 10_000,
        "hold_connections": 19_000,
        "pair_users": 1000,
        "open_rates": [1000.0, 3000.0],
        "group_size": 200,
        "duration_s": 20.0,
        "hold_s": 10.0,
        "repeat": 3,
        "drain_s": 30.0,
        "drain_quiet_s": 2.0,
    },
    "quick": {
        "connections": 500,
        "hold_connections": 0,
        "pair_users": 200,
        "open_rates": [200.0, 400.0],
        "group_size": 50,
        "duration_s": 4.0,
        "hold_s": 1.0,
        "repeat": 3,
        "drain_s": 5.0,
        "drain_quiet_s": 1.0,
    },
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", choices=sorted(SCALES), default="full", help="defaults for the options below")
    p.add_argument("--connections", type=int, help="connections opened for the idle and open-loop phases")
    p.add_argument(
        "--hold-connections",
        type=int,
        help="connections held with heartbeats in the last phase (0 or <= --connections: skipped; "
        "full scale: 19,000, unless --connections is given)",
    )
    p.add_argument("--hold-phase-s", type=float, default=40.0, help="how long the last phase holds them")
    p.add_argument("--workers", type=int, default=2, help="swarm processes")
    p.add_argument("--connect-rate", type=float, default=1000.0, help="new connections per second, in total")
    p.add_argument(
        "--hold-connect-rate",
        type=float,
        default=300.0,
        help="connection rate of the hold ramp, which runs on the pinned server core: at 1,000/s that core fell "
        "behind and devices met the 10 s auth deadline (close 4001); a real population does not connect that fast",
    )
    p.add_argument("--hold-s", type=float, help="idle hold before counting and measuring memory")
    p.add_argument(
        "--pair-users", type=int, help="users sending 1:1 (ring friends); also the echo connections"
    )
    p.add_argument(
        "--open-rates",
        type=lambda v: [float(x) for x in v.split(",") if x],
        help="offered loads (msgs/s in total, comma-separated) of the open-loop push-latency phase; '' skips it",
    )
    p.add_argument(
        "--open-group-fraction", type=float, default=0.0, help="share of open-loop sends to the group"
    )
    p.add_argument("--window", type=int, default=4, help="1:1 (and echo) sends awaiting their ack per sender")
    p.add_argument("--group-size", type=int, help="group members (and broadcast connections)")
    p.add_argument("--group-senders", type=int, default=4)
    p.add_argument("--group-window", type=int, default=4)
    p.add_argument("--text-bytes", type=int, default=48, help="message text (and echo frame) size")
    p.add_argument("--duration-s", type=float, help="load time of each phase")
    p.add_argument("--drain-s", type=float, help="longest wait after a phase for acks and deliveries")
    p.add_argument("--drain-quiet-s", type=float, help="a phase's drain ends after this long without traffic")
    p.add_argument("--repeat", "--repeats", dest="repeat", type=int, help="rounds of every phase (medians)")
    p.add_argument("--profile", action="store_true", help="py-spy record the server under one more 1:1 run")
    p.add_argument("--source-addresses", type=int, default=0, help="0: one per 10,000 connections")
    p.add_argument("--out", type=Path, default=ROOT / "reports")
    p.add_argument(
        "--data-dir", help="parent of the server's temporary data directory (default: the system temp)"
    )
    p.add_argument(
        "--server-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a wsim setting for this run (dotted key, YAML value; repeatable), e.g. for an A/B of one knob: "
        "'strategies.store.messages={kind: sqlite, path: messages.db, cache_size_kib: 65536}'",
    )
    args = p.parse_args(argv)
    try:
        server_settings(args.server_set)
    except ExperimentError as exc:
        p.error(str(exc).replace("--set", "--server-set", 1))
    if args.connections is not None and args.hold_connections is None:
        args.hold_connections = 0  # a chosen size: no 19,000-connection phase unless asked
    for key, value in SCALES[args.scale].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = run_dir(args.out, "bench_core")
    # SIGTERM (e.g. from `timeout`) stops the run like Ctrl-C: the servers and workers are stopped, not orphaned
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        result = asyncio.run(bench(args, out))
    finally:
        signal.signal(signal.SIGTERM, previous)
    result["args"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    (out / "result.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    text = report(result)
    (out / "report.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    print(f"\nsaved to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
