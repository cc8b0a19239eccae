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
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments.harness.server import ServerProcess
from experiments.load.spec import CLIENT_FAULT_TYPES
from experiments.load.swarm import Credential

if TYPE_CHECKING:
    from experiments.harness.config import Experiment

LOCUSTFILE = Path(__file__).with_name("locust_wsim.py")


async def run_locust(
    exp: Experiment,
    creds: list[Credential],
    server: ServerProcess,
    ws_url: str,
    out: Path,
    seed: int,
    on_start: Callable[[int], None],
) -> tuple[dict[str, Any], str, str, int]:
    """Run the load; returns (driver stats, /metrics before, /metrics after, start time in ns)."""
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
    before = await server.metrics_text()
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
    after = await server.metrics_text()
    if code != 0:
        raise RuntimeError(f"locust exited with {code} (see {out / 'locust.log'})")
    stats = {"connected": users, "locust_exit": code, "locust_csv": str(out / "locust_stats.csv")}
    return stats, before, after, start_ns
