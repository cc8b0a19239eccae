"""bench_core's 1:1 closed loop with the server's own CPU time per message (what issue 11 compares).

    python -m experiments.bench_core_cpu --connections 1000 --duration-s 8 --repeats 3 --open-rates ''

Runs experiments/bench_core.py unchanged, except that each phase also reads the server process's CPU time
(user + system, psutil) before and after and reports ``server_cpu_us_per_msg`` (CPU over the phase / messages
acked) and ``server_cpu_us_per_delivery``. Prints the 1:1 and fan-out medians as one JSON line. For comparing
two commits side by side (PYTHONPATH at each) until bench_core reports server CPU itself.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import psutil

from experiments import bench_core

_phase = bench_core._phase  # wrapped, not changed


async def _phase_with_cpu(*args: Any, **kwargs: Any) -> dict[str, Any]:
    server = next(a for a in (*args, *kwargs.values()) if hasattr(a, "pid") and hasattr(a, "metrics_text"))
    ps = psutil.Process(server.pid)
    before = ps.cpu_times()
    result = await _phase(*args, **kwargs)
    after = ps.cpu_times()
    cpu_s = (after.user - before.user) + (after.system - before.system)
    result["server_cpu_s"] = cpu_s
    result["server_cpu_us_per_msg"] = cpu_s / max(1, result["acked"]) * 1e6
    result["server_cpu_us_per_delivery"] = cpu_s / max(1, result["delivered"]) * 1e6
    return result


def main(argv: list[str] | None = None) -> int:
    bench_core._phase = _phase_with_cpu
    args = bench_core.parse_args(argv)
    result = asyncio.run(bench_core.bench(args))
    keys = ("acked_per_s", "delivered_per_s", "server_cpu_us_per_msg", "server_cpu_us_per_delivery")
    out: dict[str, Any] = {}
    for phase in ("one_to_one", "fanout"):
        r = result[phase]
        out[phase] = {k: r[k] for k in keys} | {
            "runs_cpu_us_per_msg": [x["server_cpu_us_per_msg"] for x in r["runs"]],
            "retries": r["server"]["retries"],
            "gc_pauses": r["server"]["gc_pauses"],
            "send_ack_ms": r["send_ack_ms"],
        }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
