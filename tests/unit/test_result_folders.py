"""Result folders of every producer live side by side under reports/; only experiment runs are read as such."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import run_experiment
from experiments.analysis import reports


def _folder(base: Path, name: str, files: dict[str, Any]) -> Path:
    d = base / name
    d.mkdir(parents=True)
    for fname, content in files.items():
        (d / fname).write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return d


def test_foreign_folders_are_skipped_not_read(tmp_path: Path) -> None:
    exp = tmp_path / "cluster_bus"
    harness = _folder(
        exp,
        "20261201T000000Z-aaaa",
        {"summary.json": {"cells": {}}, "config.resolved.yaml": "experiment: {}\n", "metadata.json": {}},
    )
    tagged = _folder(
        exp,
        "20261202T000000Z-bbbb",
        {
            "summary.json": {"cells": {}},
            "config.resolved.yaml": "x: 1\n",
            "metadata.json": {"kind": "experiment"},
        },
    )
    # A benchmark's folder with a summary.json of its own shape, and one without the harness's files.
    _folder(
        exp,
        "20261203T000000Z-cccc",
        {"summary.json": {"single": {}}, "metadata.json": {"kind": "cluster_bench"}},
    )
    _folder(tmp_path / "bench_storage", "20261203T000000Z-dddd", {"summary.json": {"sqlite": {}}})
    _folder(exp, "20261204T000000Z-eeee", {"config.resolved.yaml": "x: 1\n"})  # interrupted: no summary
    assert reports.runs(tmp_path, "cluster_bus") == [harness, tagged]
    assert reports.latest_run(tmp_path, "cluster_bus") == tagged
    assert reports.experiments_with_results(tmp_path) == ["cluster_bus"]


def test_cell_option_reaches_the_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    async def fake_run(*args: Any, only: list[str] | None = None, **kwargs: Any) -> Path:
        seen["only"] = only
        raise run_experiment.ExperimentError("stop here")

    import experiments.harness.runner as runner

    monkeypatch.setattr(runner, "run_experiment", fake_run)
    path = str(Path(run_experiment.ROOT) / "experiments" / "retry_policies.yaml")
    assert (
        run_experiment.main([path, "--cell", "retry=none", "--reports", str(tmp_path), "--no-progress"]) == 2
    )
    assert seen["only"] == ["retry=none"]


# The committed results' size budget (docs/experiments.md, "Results"): raw ledgers are zstd-compressed Parquet
# and only the runs the figure manifest pins are committed. 96 MiB since the full-scale runs (2026-12-04: 90.7 MiB).
REPORTS_BUDGET_BYTES = 96 * 2**20


def test_committed_results_stay_within_their_budget() -> None:
    import subprocess

    root = Path(run_experiment.ROOT)
    listed = subprocess.run(
        ["git", "ls-files", "-z", "reports"], cwd=root, capture_output=True, check=False
    ).stdout.split(b"\0")
    files = [root / f.decode() for f in listed if f]
    if not files:
        from tests.support.services import unavailable

        unavailable("git ls-files lists nothing under reports/ (not a git checkout)")
    total = sum(f.stat().st_size for f in files if f.is_file())
    assert total <= REPORTS_BUDGET_BYTES, f"reports/ holds {total / 2**20:.1f} MiB of committed files"
