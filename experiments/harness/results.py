"""The result folder of one experiment run and its human-readable report.

reports/<experiment>/<UTC-time>-<git-sha>/
    config.resolved.yaml   the experiment after --set, every cell's full server settings
    metadata.json          environment (git sha + dirty flag, Python and library versions, CPU), command
    cells/<cell>/rep<k>/   raw ledgers (Parquet), metrics.json, server log, driver and proxy counters
    metrics.csv            one row per (cell, repetition, metric): value and the n behind it
    summary.json           per cell and metric: mean, std, min, max over repetitions, values, n
    report.md              tables
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from core.config import mask_secrets
from experiments.harness.config import Cell, Experiment


def write_resolved(out: Path, exp: Experiment, cells: list[Cell], command: list[str]) -> None:
    doc = {
        "command": command,
        "experiment": exp.model_dump(mode="json"),
        "cells": [
            {
                "name": c.name,
                "params": c.params,
                "server": c.settings.model_dump(mode="json", context={"mask_secrets": True}),
            }
            for c in cells
        ],
    }
    (out / "config.resolved.yaml").write_text(
        yaml.safe_dump(mask_secrets(doc), sort_keys=False, allow_unicode=True), encoding="utf-8"
    )


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "std": None, "min": None, "max": None}
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(values), "max": max(values)}


def summarize(results: dict[str, list[dict[str, Any]]], cells: list[Cell]) -> dict[str, Any]:
    """Aggregate repetitions: per cell, per metric, the mean/std over repetitions with every value and n."""
    out: dict[str, Any] = {}
    params = {c.name: c.params for c in cells}
    for cell, reps in results.items():
        names = sorted({k for r in reps for k in r})
        metrics: dict[str, Any] = {}
        for name in names:
            figs = [r.get(name) or {"value": None, "n": 0} for r in reps]
            vals = [float(f["value"]) for f in figs if f["value"] is not None]
            metrics[name] = {
                **_stats(vals),
                "repetitions": len(vals),
                "values": [f["value"] for f in figs],
                "n": [f["n"] for f in figs],
            }
        out[cell] = {"params": params.get(cell, {}), "metrics": metrics}
    return out


def write_metrics_csv(out: Path, results: dict[str, list[dict[str, Any]]]) -> None:
    lines = ["cell,repetition,metric,value,n"]
    for cell, reps in results.items():
        for k, r in enumerate(reps):
            for name, f in sorted(r.items()):
                v = "" if f["value"] is None else repr(float(f["value"]))
                lines.append(f"{cell},{k},{name},{v},{f['n']}")
    (out / "metrics.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _fmt(stat: dict[str, Any]) -> str:
    mean = stat.get("mean")
    if mean is None:
        return "-"
    n = stat["n"]
    n_txt = f"n={int(sum(x for x in n if x))}" if any(n) else "n=0"
    digits = 4 if abs(mean) < 1 else 1
    if stat["repetitions"] > 1:
        return f"{mean:.{digits}f} ± {stat['std']:.{digits}f} ({n_txt})"
    return f"{mean:.{digits}f} ({n_txt})"


GROUPS: dict[str, list[str]] = {
    "delivery": [
        "delivery_rate", "delivery_rate_acked", "duplicate_rate", "send_success_rate", "sends", "sends_unknown",
        "lost_deliveries", "duplicate_deliveries",
    ],
    "ordering": [
        "push_streams_in_order_rate", "push_order_violations", "push_duplicates", "push_duplicate_rate",
        "streams_in_order_rate", "order_violations", "sender_order_violations",
    ],
    "latency": [
        "send_ack_p50_ms", "send_ack_p99_ms", "send_deliver_p50_ms", "send_deliver_p99_ms",
        "send_deliver_all_p50_ms", "send_deliver_all_p99_ms", "recovered_by_sync_rate", "server_send_ack_p99_ms", "server_send_deliver_p99_ms",
    ],
    "reconnects and offline": [
        "reconnect_success_rate", "reconnect_p50_ms", "reconnect_p99_ms", "disconnects",
        "spontaneous_disconnects", "offline_push_success", "offline_push_p99_ms",
    ],
    "throughput and server": [
        "sent_per_s", "delivered_per_s", "connected", "history_p99_ms", "cache_hit_rate", "server_retries",
        "server_dead_letters", "server_dedup_hits", "server_cpu_median_percent", "server_rss_max_mib",
    ],
    "Locust's own statistics (driver locust; its latency includes Locust's scheduling)": [
        "locust_send_p50_ms", "locust_send_p99_ms", "locust_deliver_p50_ms", "locust_deliver_p99_ms",
        "locust_connect_p99_ms", "locust_failures", "locust_requests_per_s",
    ],
}  # fmt: skip


def _provenance(metadata: dict[str, Any]) -> list[str]:
    """Where the figures come from when it is not a local node on real services: an external target, a
    stand-in."""
    lines: list[str] = []
    target = metadata.get("target")
    if target:
        where = "; ".join(f"`{c}` -> {', '.join(u)}" for c, u in target["cells"].items())
        lines += [
            f"**External target.** {where}. {target['note']}. /metrics: {target.get('metrics', 'unknown')}"
            + (f" ({'; '.join(target['metrics_errors'])})" if target.get("metrics_errors") else "")
            + ".",
            "",
        ]
    for cell, note in (metadata.get("stand_ins") or {}).items():
        lines += [f"**Stand-in, cell `{cell}`.** {note}.", ""]
    return lines


def report_md(exp: Experiment, summary: dict[str, Any], metadata: dict[str, Any], out: Path) -> str:
    cells = list(summary)
    varied = set(exp.matrix) | {k for c in exp.cells for k in c.set}

    def given(key: str, value: object) -> str:
        """A setting as the run header states it: a value the cells vary is "per cell" (see Cells)."""
        return "per cell" if key in varied else str(value)

    lines = [
        f"# {exp.name}",
        "",
        f"**Question.** {exp.question}" if exp.question else "",
        "",
        exp.description.strip(),
        "",
        f"Run `{out.name}`: git {metadata['git_sha']}{' (dirty)' if metadata['git_dirty'] else ''}, "
        f"{metadata['cpu_count']} x {metadata['cpu_model']}, Python {metadata['python']}, "
        f"{exp.repetitions} repetition(s), {given('population.users', exp.population.users)} users x "
        f"{given('population.devices_per_user', exp.population.devices_per_user)} device(s), "
        f"driver {given('driver', exp.driver)}, "
        f"{exp.workload.duration_s:g} s of load per repetition.",
        "",
        *_provenance(metadata),
        "Cells: "
        + "; ".join(f"`{c}` = {json.dumps(summary[c]['params'], ensure_ascii=False)}" for c in cells),
        "",
        "Each figure: mean ± standard deviation over repetitions, and n = the events behind it, summed over "
        "repetitions (sends, expected deliveries, streams, samples).",
        "",
    ]
    headline = [m for m in exp.headline if any(m in summary[c]["metrics"] for c in cells)]
    sections = [("headline", headline), *GROUPS.items()]
    for title, names in sections:
        present = [m for m in names if any(m in summary[c]["metrics"] for c in cells)]
        if not present:
            continue
        lines += [
            f"## {title}",
            "",
            "| metric | " + " | ".join(cells) + " |",
            "|---" * (len(cells) + 1) + "|",
        ]
        for m in present:
            row = [_fmt(summary[c]["metrics"].get(m, {"mean": None})) for c in cells]
            lines.append(f"| {m} | " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(line for line in lines if line is not None) + "\n"
