"""Drive a cell with Locust, headless, in a subprocess running :mod:`experiments.load.locust_wsim`.

The plan (credentials, workload, client faults, start time) goes to the locustfile as a JSON file; the ledger
comes back as Parquet in the repetition's folder next to Locust's own CSV statistics (``locust_stats.csv``...).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments.load.spec import CLIENT_FAULT_TYPES
from experiments.load.swarm import Credential

if TYPE_CHECKING:
    from experiments.harness.config import Experiment

LOCUSTFILE = Path(__file__).with_name("locust_wsim.py")


async def run_locust(
    exp: Experiment,
    creds: list[Credential],
    scrape: Callable[[], Awaitable[str]],
    ws_url: str,
    out: Path,
    seed: int,
    on_start: Callable[[int], None],
) -> tuple[dict[str, Any], str, str, int]:
    """Run the load; returns (driver stats, /metrics before, /metrics after, start time in ns).

    ``scrape`` reads the node's /metrics text (a local node's or an external target's; "" when unreachable)."""
    users = len(creds)
    spawn_s = users / exp.locust.spawn_rate_per_s
    start_ns = time.time_ns() + int((spawn_s + 3) * 1e9)
    plan = {
        "ws_url": ws_url,
        "clients": [asdict(c) for c in creds],
        "workload": exp.workload.model_dump(),
        "faults": [f.model_dump() for f in exp.faults if f.type in CLIENT_FAULT_TYPES],
        "start_ns": start_ns,
        "seed": seed,
    }
    plan_path = out / "locust_plan.json"
    await asyncio.to_thread(plan_path.write_text, json.dumps(plan), "utf-8")
    run_s = spawn_s + 3 + exp.workload.duration_s
    before = await scrape()
    on_start(start_ns)
    log = await asyncio.to_thread((out / "locust.log").open, "ab")
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(users),
            "-r", f"{exp.locust.spawn_rate_per_s:g}", "-t", f"{max(1, round(run_s))}s",
            "--stop-timeout", f"{exp.workload.drain_s + 5:g}", "--csv", str(out / "locust"), "--only-summary",
            "-H", ws_url, "--loglevel", "WARNING", "--exit-code-on-error", "0",
            env={**os.environ, "WSIM_LOCUST_PLAN": str(plan_path), "WSIM_LOCUST_OUT": str(out)},
            stdout=log, stderr=log,
        )  # fmt: skip
        code = await proc.wait()
    finally:
        log.close()
        # The plan holds every client's access token and repeats membership.json: 0.5 MB per 1,000 users that
        # nothing reads after the run (and throwaway credentials are still credentials).
        plan_path.unlink(missing_ok=True)
    after = await scrape()
    if code != 0:
        raise RuntimeError(f"locust exited with {code} (see {out / 'locust.log'})")
    # Connections are not assumed: the harness counts them from the ledger's "connected" events.
    stats = {"users_spawned": users, "locust_exit": code, "locust_csv": str(out / "locust_stats.csv")}
    return stats, before, after, start_ns


# Locust's request names (experiments/load/locust_wsim.py) and the short names of their metrics.
LOCUST_REQUESTS = {"message.send": "send", "message.deliver": "deliver", "connect": "connect"}


def locust_figures(stats_csv: Path) -> dict[str, dict[str, Any]]:
    """Locust's own statistics of one repetition, as metrics beside the ledger's.

    From ``locust_stats.csv``: per request kind (send = send->ack, deliver = send->deliver, connect = the TCP and
    WebSocket handshake) p50/p99 in ms with the request count as n, and ``locust_failures`` (every failed request,
    n = all requests). Locust rounds its percentiles into buckets and adds its own scheduling latency (130-160 ms
    at 10k msg/s here), which is why the ledger's timestamps stay the latency of record."""
    import pandas as pd

    from experiments.analysis.metrics import figure

    table = pd.read_csv(stats_csv, na_values=["N/A"])
    out: dict[str, dict[str, Any]] = {}
    for name, short in LOCUST_REQUESTS.items():
        rows = table[table["Name"] == name]
        n = int(rows["Request Count"].sum()) if len(rows) else 0
        for pct, col in (("p50", "50%"), ("p99", "99%")):
            value = float(rows[col].iloc[0]) if n and pd.notna(rows[col].iloc[0]) else None
            out[f"locust_{short}_{pct}_ms"] = figure(value, n)
    agg = table[table["Name"] == "Aggregated"]
    total = int(agg["Request Count"].sum())
    out["locust_failures"] = figure(float(agg["Failure Count"].sum()), total)
    out["locust_requests_per_s"] = figure(float(agg["Requests/s"].sum()) if total else None, total)
    return out
