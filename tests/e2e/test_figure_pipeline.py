"""The figure pipeline on a tiny hand-made run: pin it, draw, redraw from the manifest byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from experiments.analysis.manifest import FigureError, load, rebuild

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def make_run(
    reports: Path, name: str, *, dirty: bool = False, delivery: tuple[float, float] = (1.0, 0.98)
) -> Path:
    run = reports / "quickstart" / name
    rep = run / "cells"
    cells = {"ack=three_state": delivery[0], "ack=off": delivery[1]}
    for i, cell in enumerate(cells):
        d = rep / cell / "rep0"
        d.mkdir(parents=True)
        n = 50
        pd.DataFrame(
            {
                "client": [f"u{k % 5}" for k in range(n)],
                "cmid": [f"m{k}" for k in range(n)],
                "t_sent_ns": [1_000_000_000 + k * 1_000_000 for k in range(n)],
                "t_recv_ns": [1_000_000_000 + k * 1_000_000 + (k % 7 + 1 + i) * 1_000_000 for k in range(n)],
                "via": ["push"] * n,
            }
        ).to_parquet(d / "c0.receives.parquet")
    doc = {
        "command": ["run_experiment.py"],
        "experiment": {"name": "quickstart", "question": "Does the ACK pay?", "headline": ["delivery_rate"]},
        "cells": [{"name": c, "params": {"strategies.ack": c.split("=")[1]}, "server": {}} for c in cells],
    }
    (run / "config.resolved.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    summary = {
        "experiment": "quickstart",
        "cells": {
            c: {
                "params": {},
                "metrics": {
                    "delivery_rate": {
                        "mean": v, "std": 0.001, "min": v, "max": v, "repetitions": 3, "values": [v] * 3, "n": [50] * 3,
                    }
                },
            }
            for c, v in cells.items()
        },
    }  # fmt: skip
    (run / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    meta = {"kind": "experiment", "git_sha": "0123456789", "git_dirty": dirty}
    (run / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    return run


def rebuild_args(tmp_path: Path) -> dict[str, Path]:
    """Where a test's rebuild reads and writes: the tracked notebooks, reports and figures under ``tmp_path``."""
    return {
        "root": tmp_path,
        "notebooks_dir": ROOT / "notebooks",
        "reports_dir": tmp_path / "reports",
        "figures_dir": tmp_path / "figures",
    }


def test_pin_draw_and_redraw_byte_identical(tmp_path: Path) -> None:
    reports, figures = tmp_path / "reports", tmp_path / "figures"
    clean = make_run(reports, "20261201T000000Z-0123456789")
    tracked = {p.name: p.read_bytes() for p in (ROOT / "notebooks").glob("*.ipynb")}
    kw = rebuild_args(tmp_path)

    first = rebuild(**kw, latest=True, executed_dir=tmp_path / "executed")  # type: ignore[arg-type]
    assert "quickstart__delivery_rate.png" in first.new
    assert "summary__headline.png" in first.new
    manifest = load(figures)
    entry = manifest["figures"]["quickstart__delivery_rate.png"]
    assert entry["run"] == "reports/quickstart/20261201T000000Z-0123456789"
    assert entry["git_sha"] == "0123456789" and entry["git_dirty"] is False
    assert len(entry["config_sha256"]) == 64 and entry["notebook"].endswith("01_quickstart.ipynb")

    # A newer run does not move the figures until they are re-pinned; a dirty one is never pinned by --latest.
    make_run(reports, "20261202T000000Z-0123456789", dirty=True, delivery=(0.5, 0.4))
    again = rebuild(**kw)  # type: ignore[arg-type]
    assert again.changed == [] and again.new == []
    assert sorted(again.unchanged) == sorted(first.new)
    repinned = rebuild(**kw, latest=True)  # type: ignore[arg-type]
    assert load(figures)["runs"]["quickstart"]["run"].endswith(clean.name)
    assert any("dirty" in n for n in repinned.notes)

    # Pinning the dirty run by hand is refused unless --allow-dirty.
    manifest = load(figures)
    manifest["runs"]["quickstart"]["run"] = "reports/quickstart/20261202T000000Z-0123456789"
    (figures / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(FigureError, match="modified tree"):
        rebuild(**kw)  # type: ignore[arg-type]
    dirty = rebuild(**kw, allow_dirty=True)  # type: ignore[arg-type]
    assert "quickstart__delivery_rate.png" in dirty.changed

    # The tracked notebooks were executed as copies, never rewritten.
    assert {p.name: p.read_bytes() for p in (ROOT / "notebooks").glob("*.ipynb")} == tracked


def test_no_manifest_says_how_to_pin(tmp_path: Path) -> None:
    with pytest.raises(FigureError, match="--figures --latest"):
        rebuild(root=tmp_path, notebooks_dir=ROOT / "notebooks", reports_dir=tmp_path, figures_dir=tmp_path)


def make_transports_run(reports: Path, name: str) -> Path:
    """A tiny run of experiments/transports/run.py (its own kind: results.csv, read by 07_transports)."""
    run = reports / "transports" / name
    run.mkdir(parents=True)
    rows = [
        {
            "transport": t, "users": 20, "rate_per_s": r, "repetition": k,
            "latency_p50_ms": base * (1 + k / 10), "latency_p99_ms": base * 3, "up_units_per_msg": 1.0,
            "requests_per_msg": 1.0, "bytes_per_msg": 300.0 * base, "server_cpu_ms_per_msg": 0.5 * base,
            "server_cpu_util": 0.01, "empty_response_ratio": 0.5 if "poll" in t else None, "delivered": 100,
            "missing": 0,
        }
        for t, base in (("websocket", 2.0), ("long_poll", 5.0))
        for r in (20.0, 100.0)
        for k in range(3)
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(run / "results.csv", index=False)
    (run / "summary.json").write_text(json.dumps({"cells": []}), encoding="utf-8")
    (run / "config.resolved.yaml").write_text(yaml.safe_dump({"repeat": 3}), encoding="utf-8")
    meta = {"kind": "transports", "git_sha": "0123456789", "git_dirty": False, "platform": "test"}
    (run / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    return run


def test_transport_runs_are_pinned_and_redrawn_beside_the_harness_runs(tmp_path: Path) -> None:
    reports, figures = tmp_path / "reports", tmp_path / "figures"
    make_run(reports, "20261201T000000Z-0123456789")
    run = make_transports_run(reports, "20261201T000000Z-0123456789")
    kw = rebuild_args(tmp_path)

    first = rebuild(**kw, latest=True, executed_dir=tmp_path / "executed")  # type: ignore[arg-type]
    assert {"transports__latency_p99.png", "transports__empty_responses.pdf"} <= set(first.new)
    manifest = load(figures)
    assert manifest["figures"]["transports__bytes_per_msg.png"]["run"] == f"reports/transports/{run.name}"
    assert list(manifest["figures"]["summary__headline.png"]["runs"]) == ["quickstart"]
    assert "transports__server_cpu" in (figures / "README.md").read_text(encoding="utf-8")

    # A newer transports run is not drawn until re-pinned; the pinned one redraws byte for byte.
    newer = make_transports_run(reports, "20261202T000000Z-0123456789")
    (newer / "results.csv").write_text((run / "results.csv").read_text().replace(",2.0,", ",9.0,"))
    again = rebuild(**kw)  # type: ignore[arg-type]
    assert again.changed == [] and again.new == []
