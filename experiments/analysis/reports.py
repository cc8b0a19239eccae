"""Reading result folders (reports/<experiment>/<run>/): the only way notebooks get at numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from experiments.analysis.metrics import REST_KINDS, answered_calls, answered_pages


class NoResultsError(FileNotFoundError):
    pass


def run_kind(run_dir: str | Path) -> str | None:
    """What produced a result folder (metadata.json's ``kind``); folders from before the field existed count
    as experiment runs when they have the harness's files. None for anything else (a foreign folder)."""
    d = Path(run_dir)
    try:
        meta = json.loads((d / "metadata.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = {}
    kind = meta.get("kind") if isinstance(meta, dict) else None
    if isinstance(kind, str):
        return kind
    harness_files = ("summary.json", "config.resolved.yaml", "metadata.json")
    return "experiment" if all((d / f).is_file() for f in harness_files) else None


def is_clean(run_dir: str | Path) -> bool:
    """Made from a committed tree (metadata.json ``git_dirty`` false)."""
    try:
        meta = json.loads((Path(run_dir) / "metadata.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return meta.get("git_dirty") is False


# The run kinds thesis figures are drawn from: the harness's runs (read by the template notebooks) and the
# transport comparison's own runner (experiments/transports/run.py, read by 07_transports).
FIGURE_KINDS = ("experiment", "transports")


def runs(reports_dir: str | Path, experiment: str, kinds: tuple[str, ...] = ("experiment",)) -> list[Path]:
    """Completed runs of ``experiment`` of the given kinds, oldest first. Folders written by other producers
    (bench_core, campaign, cluster_bench, ...) or by an interrupted run are skipped, never read."""
    base = Path(reports_dir) / experiment
    if not base.is_dir():
        return []
    return sorted(
        p for p in base.iterdir() if p.is_dir() and (p / "summary.json").is_file() and run_kind(p) in kinds
    )


def latest_run(reports_dir: str | Path, experiment: str) -> Path:
    found = runs(reports_dir, experiment)
    if not found:
        raise NoResultsError(
            f"no results for {experiment!r} under {reports_dir}: run python run_experiment.py experiments/{experiment}.yaml"
        )
    return found[-1]


def experiments_with_results(reports_dir: str | Path, kinds: tuple[str, ...] = ("experiment",)) -> list[str]:
    base = Path(reports_dir)
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if p.is_dir() and runs(base, p.name, kinds))


def summary(run_dir: str | Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((Path(run_dir) / "summary.json").read_text(encoding="utf-8"))
    return data


def resolved(run_dir: str | Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(
        (Path(run_dir) / "config.resolved.yaml").read_text(encoding="utf-8")
    )
    return data


# Drawn for every experiment beside its headline, where the run has them: when messages became visible by any
# path, and how much of that came through sync rather than push.
ALWAYS_DRAWN = ("send_deliver_all_p99_ms", "recovered_by_sync_rate")


def headline(run_dir: str | Path) -> list[str]:
    """The metrics the experiment puts first (its ``headline``), those present in the results."""
    names: list[str] = resolved(run_dir)["experiment"]["headline"]
    cells = summary(run_dir)["cells"]
    return [n for n in names if any(n in c["metrics"] for c in cells.values())]


def drawn_metrics(run_dir: str | Path) -> list[str]:
    """The headline, then :data:`ALWAYS_DRAWN` where present: one figure each."""
    first = headline(run_dir)
    cells = summary(run_dir)["cells"]
    extra = [n for n in ALWAYS_DRAWN if n not in first and any(n in c["metrics"] for c in cells.values())]
    return first + extra


def cell_order(run_dir: str | Path) -> list[str]:
    return [c["name"] for c in resolved(run_dir)["cells"]]


def metric_stats(run_dir: str | Path, metric: str) -> pd.DataFrame:
    """Per cell (in the experiment's order): mean, std, repetitions, and n_events (summed over repetitions)."""
    cells = summary(run_dir)["cells"]
    rows = []
    for cell in cell_order(run_dir):
        st = cells.get(cell, {}).get("metrics", {}).get(metric)
        if st is None:
            rows.append({"cell": cell, "mean": np.nan, "std": np.nan, "repetitions": 0, "n_events": 0})
            continue
        rows.append(
            {
                "cell": cell,
                "mean": np.nan if st["mean"] is None else st["mean"],
                "std": np.nan if st["std"] is None else st["std"],
                "repetitions": st["repetitions"],
                "n_events": sum(n for n in st["n"] if n),
            }
        )
    return pd.DataFrame(rows)


def summary_table(run_dir: str | Path, metrics: list[str] | None = None) -> pd.DataFrame:
    """Cells x metrics, each 'mean ± std' (for display)."""
    names = metrics or headline(run_dir)
    table = {}
    for name in names:
        st = metric_stats(run_dir, name).set_index("cell")
        table[name] = [
            "-" if np.isnan(m) else f"{m:.4g} ± {s:.2g}"
            for m, s in zip(st["mean"], st["std"].fillna(0), strict=True)
        ]
    return pd.DataFrame(table, index=cell_order(run_dir))


def ledger(run_dir: str | Path, table: str, cell: str | None = None) -> pd.DataFrame:
    """A ledger table (sends / receives / events) of every repetition of one cell (or every cell), with
    ``cell`` and ``repetition`` columns."""
    frames = []
    base = Path(run_dir) / "cells"
    for cell_dir in sorted(base.iterdir()) if base.is_dir() else []:
        if cell is not None and cell_dir.name != cell:
            continue
        for rep_dir in sorted(cell_dir.glob("rep*")):
            for path in sorted(rep_dir.glob(f"*.{table}.parquet")):
                df = pd.read_parquet(path)
                df["cell"] = cell_dir.name
                df["repetition"] = int(rep_dir.name[3:])
                frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def deliver_latency_ms(run_dir: str | Path, via: str = "any") -> dict[str, np.ndarray]:
    """send->deliver latency samples per cell, in ms: the first release per device and message by any path
    (``via="any"``: when the message became visible, slow recoveries through sync included), or the first
    release if it was a push (``via="push"``)."""
    out: dict[str, np.ndarray] = {}
    for cell in cell_order(run_dir):
        rec = ledger(run_dir, "receives", cell)
        if rec.empty:
            out[cell] = np.array([])
            continue
        rec = rec[rec["t_sent_ns"] > 0]
        rec = rec.sort_values("t_recv_ns", kind="stable").drop_duplicates(["repetition", "client", "cmid"])
        if via != "any":
            rec = rec[rec["via"] == via]
        out[cell] = ((rec["t_recv_ns"] - rec["t_sent_ns"]) / 1e6).to_numpy()
    return out


def rest_latency_ms(run_dir: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Client-timed account-call latency samples (ms) by kind, then cell: the answered calls, as
    ``metrics.rest_calls`` counts them (empty without such calls)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for cell in cell_order(run_dir):
        calls = ledger(run_dir, "rest", cell)
        if calls.empty:
            continue
        ok = calls[answered_calls(calls)]
        for kind in REST_KINDS:
            if (calls["kind"] == kind).any():
                out.setdefault(kind, {})[cell] = (ok.loc[ok["kind"] == kind, "latency_us"] / 1000).to_numpy()
    return out


def history_latency_ms(run_dir: str | Path) -> dict[str, np.ndarray]:
    """Client-timed history page latency samples per cell, in ms (answered pages only; empty without reads)."""
    out: dict[str, np.ndarray] = {}
    for cell in cell_order(run_dir):
        reads = ledger(run_dir, "history", cell)
        if reads.empty:
            continue
        out[cell] = (answered_pages(reads)["latency_us"] / 1000).to_numpy()
    return out
