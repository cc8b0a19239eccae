"""Server CPU per message of ``bench_core``'s phases, for side-by-side hot-path comparisons.

    python experiments/bench_hotpath.py --connections 1000 --open-rates '' --duration-s 5 --repeats 3 \
        --hold-s 1 --group-size 20 --group-senders 1 [--pyspy out.svg|out.txt] [--retry adaptive] [--no-coalesce]

Runs ``experiments/bench_core.py`` unchanged with the given arguments and adds, to each phase repetition, the
server process's own CPU time over the phase (user + system, from psutil, not wall time) divided by the messages
it acknowledged: ``server_cpu_us_per_msg``. ``--pyspy`` profiles the first 1:1 repetition with py-spy.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil

from experiments import bench_core
from experiments.harness.server import ServerProcess
from experiments.load.coordinator import WorkerPool
from experiments.load.spec import Workload

_phase = bench_core._phase
_profile: dict[str, str | None] = {"out": None}


def _cpu_s(server: ServerProcess) -> float:
    assert server.pid is not None
    t = psutil.Process(server.pid).cpu_times()
    return float(t.user + t.system)


async def _measured_phase(
    pool: WorkerPool, server: ServerProcess, workload: Workload, senders: list[int]
) -> dict[str, Any]:
    spy = None
    out = _profile["out"]
    if out is not None and workload.group_fraction == 0.0 and (workload.window or 0) > 0:
        _profile["out"] = None
        cmd = ["py-spy", "record", "-p", str(server.pid), "-d", str(int(workload.duration_s)), "-o", out]
        spy = await asyncio.create_subprocess_exec(
            *cmd,
            "-r",
            "200",
            *(["-f", "raw"] if out.endswith(".txt") else []),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
    before = _cpu_s(server)
    result = await _phase(pool, server, workload, senders)
    cpu = _cpu_s(server) - before
    if spy is not None:
        await asyncio.wait_for(spy.wait(), timeout=60)
    result["server_cpu_s"] = cpu
    result["server_cpu_us_per_msg"] = cpu * 1e6 / max(1, result["acked"])
    result["server_cpu_us_per_delivery"] = cpu * 1e6 / max(1, result["delivered"])
    result["redeliveries_per_msg"] = result["server"]["retries"] / max(1, result["acked"])
    return result


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--retry" in args:  # the server's retry policy kind (default: the config's default)
        i = args.index("--retry")
        bench_core.BENCH_SERVER["strategies"] = {"retry": {"kind": args[i + 1]}}
        del args[i : i + 2]
    if "--no-coalesce" in args:  # one socket write per frame, as before core/transport/coalesce.py
        args.remove("--no-coalesce")
        bench_core.BENCH_SERVER["server"] = {**bench_core.BENCH_SERVER["server"], "ws_coalesce_writes": False}
    if "--pyspy" in args:
        i = args.index("--pyspy")
        _profile["out"] = args[i + 1]
        del args[i : i + 2]
    bench_core._phase = _measured_phase
    captured: dict[str, Any] = {}
    bench = bench_core.bench

    async def keep(args: argparse.Namespace) -> dict[str, Any]:
        captured.update(await bench(args))
        return captured

    bench_core.bench = keep
    rc = bench_core.main(args)
    for name in ("one_to_one", "fanout"):
        runs = captured[name]["runs"]
        us = sorted(r["server_cpu_us_per_msg"] for r in runs)
        per_del = sorted(r["server_cpu_us_per_delivery"] for r in runs)
        redeliv = sorted(r["redeliveries_per_msg"] for r in runs)
        print(
            f"{name}: server CPU us/msg median {us[len(us) // 2]:.1f} {[round(u, 1) for u in us]}; "
            f"us/delivery median {per_del[len(per_del) // 2]:.1f}; "
            f"redeliveries/msg median {redeliv[len(redeliv) // 2]:.3f}; "
            f"acked/s {captured[name]['acked_per_s']:.0f}"
        )
    return rc


if __name__ == "__main__":
    sys.exit(main())
