"""``python -m experiments.campaign [--short] [--faults a,b] [--out DIR]``: run the fault campaign, judge every
fault with the checker and write a report folder (one JSON per fault, ``summary.json``, ``summary.md`` with the
table docs/reliability.md carries, and the run's metadata). Exit status 1 when any fault fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from experiments.campaign.scenarios import FAULTS, FaultResult, Options, run_fault
from experiments.harness.environment import metadata, run_dir

COLUMNS = (
    ("fault", None), ("pass", None), ("messages", "messages"), ("acked", "acked"), ("failed", "failed"),
    ("unknown", "unknown"), ("lost", "lost"), ("dup. stored", "duplicates_stored"),
    ("dup. shown", "duplicates_shown"), ("unexpected", "unexpected"), ("false errors", "false_errors"),
    ("reordered", "order_violations"), ("max recovery s", "max_recovery_s"), ("max latency s", "max_latency_s"),
)  # fmt: skip


def table(results: list[dict[str, Any]]) -> str:
    """The fault x figures table (Markdown) from the faults' JSON results."""
    lines = ["| " + " | ".join(c for c, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in results:
        v = r["verdict"]
        cells = [r["name"], "yes" if r["passed"] else "**no**"]
        for _, key in COLUMNS[2:]:
            assert key is not None
            value = v[key] + (v["undelivered"] if key == "lost" else 0)
            cells.append(f"{value:g}" if isinstance(value, float) else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def run(opts: Options, names: list[str], out: Path) -> list[FaultResult]:
    results = []
    for name in names:
        spec = FAULTS[name]
        t = time.monotonic()
        print(f"[campaign] {name} ...", flush=True)
        result = await run_fault(
            opts, name, spec.fault, nodes=spec.nodes, members_per_node=spec.members, overrides=spec.overrides,
            env=spec.env, prepare=spec.prepare,
        )  # fmt: skip
        (out / f"{name}.json").write_text(
            json.dumps(result.as_dict(), indent=2, default=str), encoding="utf-8"
        )
        print(
            f"[campaign] {name}: {'PASS' if result.passed else 'FAIL'} in {time.monotonic() - t:.1f} s "
            f"({result.verdict.messages} messages, {result.verdict.acked} acked)"
            + (f" error: {result.error}" if result.error else ""),
            flush=True,
        )
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.campaign", description=__doc__)
    p.add_argument("--short", action="store_true", help="the short form (CI): fewer, shorter injections")
    p.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, of: {', '.join(FAULTS)}")
    p.add_argument(
        "--out", type=Path, default=None, help="report folder (default reports/campaign/<time>-<sha>)"
    )
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="Redis for presence and the bus")
    p.add_argument("--keep-data", action="store_true", help="keep the nodes' data and logs in the report")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.faults.split(",") if n.strip()]
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        p.error(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(FAULTS)}")
    logging.basicConfig(level=logging.WARNING)
    out = args.out or run_dir(Path("reports"), "campaign")
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work" if args.keep_data else Path(tempfile.mkdtemp(prefix="wsim-campaign-"))
    meta = {
        **metadata("campaign"),
        "command": ["python", "-m", "experiments.campaign", *(argv or sys.argv[1:])],
    }
    (out / "metadata.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    try:
        results = asyncio.run(run(Options(args.short, work, args.redis_url), names, out))
    finally:
        if not args.keep_data:
            shutil.rmtree(work, ignore_errors=True)
    dicts = [r.as_dict() for r in results]
    summary = {"short": args.short, "passed": all(r.passed for r in results), "faults": dicts}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    (out / "summary.md").write_text(table(dicts) + "\n", encoding="utf-8")
    print(table(dicts))
    print(f"[campaign] report: {out}")
    return 0 if summary["passed"] else 1
