"""Which run backs which figure: ``thesis_figures/manifest.json``, and rebuilding the figures from it.

A figure in the thesis must keep pointing at the run it was drawn from, whatever is run later. The manifest pins
one run folder per experiment; ``run_experiment.py --figures`` executes the notebooks on exactly those runs (into
a scratch copy: the tracked notebooks are never rewritten) and records, for every figure file, the run, its git
sha and dirty flag, the hash of its resolved config, the notebook that drew it and the file's own hash.
``--figures --latest`` re-pins every experiment to its newest run made from a clean tree; a run made from a
modified tree (it carries ``git.diff``) is pinned only with ``--allow-dirty``.

Rebuilding is byte-identical for the PNG and PDF files on the same library versions (matplotlib writes no time
stamps: the PDF's creation date is dropped, see :func:`experiments.analysis.figures.save`); another matplotlib or
FreeType version may move pixels, so :func:`rebuild` reports which files changed rather than failing.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from experiments.analysis import reports as rep
from experiments.analysis.notebooks import experiment_of, run_notebooks

MANIFEST_NAME = "manifest.json"


class FigureError(RuntimeError):
    """The figures cannot be rebuilt as asked (no manifest, a pinned run missing or dirty); the message says
    what to do."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


def run_info(run_dir: Path, root: Path) -> dict[str, Any]:
    meta = json.loads((run_dir / "metadata.json").read_text(encoding="utf-8"))
    return {
        "run": _rel(run_dir, root),
        "git_sha": meta.get("git_sha"),
        "git_dirty": bool(meta.get("git_dirty")),
        "config_sha256": _sha256(run_dir / "config.resolved.yaml"),
    }


def load(figures_dir: Path) -> dict[str, Any]:
    path = figures_dir / MANIFEST_NAME
    if not path.is_file():
        raise FigureError(
            f"no {path}: pin runs first with `python run_experiment.py --figures --latest` "
            "(each experiment's newest clean run)"
        )
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def pinned_runs(manifest: dict[str, Any], root: Path) -> dict[str, Path]:
    return {exp: (root / info["run"]) for exp, info in manifest.get("runs", {}).items()}


def latest_runs(reports_dir: Path, *, allow_dirty: bool) -> tuple[dict[str, Path], list[str]]:
    """The newest run of each experiment (clean ones only unless ``allow_dirty``), and notes on what was
    passed over."""
    chosen: dict[str, Path] = {}
    notes: list[str] = []
    for exp in rep.experiments_with_results(reports_dir, rep.FIGURE_KINDS):
        candidates = rep.runs(reports_dir, exp, rep.FIGURE_KINDS)
        usable = candidates if allow_dirty else [r for r in candidates if rep.is_clean(r)]
        if not usable:
            notes.append(f"{exp}: no clean run (newest {candidates[-1].name} is dirty); use --allow-dirty")
            continue
        chosen[exp] = usable[-1]
        if usable[-1] != candidates[-1]:
            notes.append(f"{exp}: newer run {candidates[-1].name} is dirty, pinned {usable[-1].name}")
    return chosen, notes


@dataclass
class Rebuild:
    manifest: dict[str, Any]
    notebooks: list[Path]
    unchanged: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def rebuild(
    *,
    root: Path,
    notebooks_dir: Path,
    reports_dir: Path,
    figures_dir: Path,
    latest: bool = False,
    allow_dirty: bool = False,
    executed_dir: Path | None = None,
) -> Rebuild:
    """Draw every figure from the pinned runs (or re-pin to the latest with ``latest``) and write the manifest."""
    notes: list[str] = []
    old: dict[str, Any] = {}
    if latest:
        runs, notes = latest_runs(reports_dir, allow_dirty=allow_dirty)
        if (figures_dir / MANIFEST_NAME).is_file():
            old = load(figures_dir)
    else:
        old = load(figures_dir)
        runs = pinned_runs(old, root)
    if not runs:
        raise FigureError(f"no experiment run to draw from under {reports_dir}")
    problems = []
    for exp, run_dir in sorted(runs.items()):
        if rep.run_kind(run_dir) not in rep.FIGURE_KINDS or not (run_dir / "summary.json").is_file():
            problems.append(f"{exp}: pinned run {run_dir} is missing or not a run figures are drawn from")
        elif not allow_dirty and not rep.is_clean(run_dir):
            problems.append(
                f"{exp}: pinned run {run_dir.name} was made from a modified tree (see its git.diff)"
            )
    if problems:
        raise FigureError(
            "cannot rebuild the figures:\n  " + "\n  ".join(problems) + "\n(--allow-dirty accepts dirty runs)"
        )

    started = time.time()
    executed = run_notebooks(
        notebooks_dir, reports=reports_dir, figures=figures_dir, output_dir=executed_dir, runs=runs
    )
    old_figs: dict[str, Any] = old.get("figures", {})
    result = Rebuild(manifest={}, notebooks=executed, notes=notes)
    figures: dict[str, Any] = {}
    infos = {exp: run_info(run_dir, root) for exp, run_dir in runs.items()}
    for nb in executed:
        of = experiment_of(nb)
        prefix = "summary" if of is None else of
        for fig in sorted(figures_dir.glob(f"{prefix}__*")):
            if fig.suffix not in (".png", ".pdf") or fig.stat().st_mtime < started - 1:
                continue
            entry: dict[str, Any] = {"notebook": _rel(notebooks_dir / nb.name, root), "sha256": _sha256(fig)}
            if of is None:
                entry["runs"] = {  # the summary draws the harness's runs only
                    e: i["run"] for e, i in sorted(infos.items()) if rep.run_kind(runs[e]) == "experiment"
                }
            else:
                entry.update(infos[of])
            figures[fig.name] = entry
            before = old_figs.get(fig.name, {}).get("sha256")
            (
                result.new
                if before is None
                else result.unchanged
                if before == entry["sha256"]
                else result.changed
            ).append(fig.name)
    stale = sorted(
        {p.stem for p in figures_dir.glob("*__*") if p.suffix in (".png", ".pdf") and p.name not in figures}
    )
    if stale:
        notes.append(f"not backed by a pinned run (stale, delete or pin a run): {', '.join(stale)}")
    manifest = {
        "about": "Which run backs which figure; rebuild with `python run_experiment.py --figures` "
        "(see experiments/analysis/manifest.py).",
        "runs": {exp: infos[exp] for exp in sorted(infos)},
        "figures": dict(sorted(figures.items())),
    }
    (figures_dir / MANIFEST_NAME).write_text(
        json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (figures_dir / "README.md").write_text(captions(manifest, runs), encoding="utf-8")
    result.manifest = manifest
    return result


TRANSPORTS_QUESTION = (
    "what do WebSocket, STOMP over WebSocket, HTTP long polling, HTTP short polling and MQTT cost per delivered "
    "message, and how fast do they deliver it?"
)
TRANSPORT_FIGURES = {  # 07_transports.ipynb's figures
    "latency_p50": "Send→receive latency p50 (ms)",
    "latency_p99": "Send→receive latency p99 (ms)",
    "bytes_per_msg": "Bytes on the wire per delivered message, both directions",
    "requests_per_msg": "Device uplink units (requests, frames or packets) per delivered message",
    "server_cpu": "Server CPU (ms) per delivered message",
    "empty_responses": "Share of poll responses that carried no frame (polling transports)",
}


def captions(manifest: dict[str, Any], runs: dict[str, Path]) -> str:
    """``thesis_figures/README.md``: one caption per figure (PNG and PDF share it), from the pinned runs."""
    from experiments.analysis.figures import METRIC_LABELS, TARGETS

    lines = [
        "# Thesis figures",
        "",
        "Generated by `python run_experiment.py --figures` from the runs pinned in `manifest.json`; do not edit.",
        "Bars and points are the mean over repetitions; error bars are the 95 % confidence interval of that mean",
        "(Student's t over the repetitions, none with one repetition), clipped where a quantity cannot go.",
        "`n` is the number of events behind the figure, summed over repetitions; `r` the repetitions.",
        "A red dashed line is the research plan's target. Latency CDFs count the first release of each message",
        "to each device by any path (push or sync).",
        "",
    ]
    stems = sorted({name.rsplit(".", 1)[0] for name in manifest["figures"]})
    for stem in stems:
        exp, _, metric = stem.partition("__")
        if exp == "summary":
            lines += [f"**{stem}** — the headline metric of every pinned experiment, one panel each.", ""]
            continue
        run = runs[exp]
        if rep.run_kind(run) == "transports":
            what = TRANSPORT_FIGURES.get(metric, metric)
            reps = yaml.safe_load((run / "config.resolved.yaml").read_text(encoding="utf-8")).get(
                "repeat", "?"
            )
            lines += [
                f"**{stem}** — {what}, per transport against the total message rate, one panel per user count "
                f"(median over repetitions). Question: {TRANSPORTS_QUESTION} Run `{manifest['runs'][exp]['run']}` "
                f"({reps} repetition(s), git {manifest['runs'][exp]['git_sha']}; experiments/transports/run.py).",
                "",
            ]
            continue
        question = rep.resolved(run)["experiment"].get("question", "")
        reps = rep.summary(run).get("repetitions", "?")
        if metric == "send_deliver_cdf":
            what = "Empirical CDF of send→visible latency (ms, log scale), one curve per cell."
        elif metric == "history_cdf":
            what = "Empirical CDF of history page latency, timed by the client (ms, log scale), one curve per cell."
        elif metric.startswith("rest_") and metric.endswith("_cdf"):
            kind = metric.removeprefix("rest_").removesuffix("_cdf")
            what = f"Empirical CDF of the `{kind}` account call's latency, timed by the client (ms, log scale), one curve per cell."
        else:
            zh, en, unit = METRIC_LABELS.get(metric, (metric, metric, ""))
            what = f"{zh} / {en}{f' ({unit})' if unit else ''} per cell."
            if metric in TARGETS:
                value, sense = TARGETS[metric]
                what += f" Target {sense} {value:g}."
        lines += [
            f"**{stem}** — {what} Question: {question} Run `{manifest['runs'][exp]['run']}` "
            f"({reps} repetition(s), git {manifest['runs'][exp]['git_sha']}).",
            "",
        ]
    return "\n".join(lines)


def unpinned_runs(reports_dir: Path, figures_dir: Path, root: Path) -> list[Path]:
    """Experiment runs under ``reports_dir`` that no figure is drawn from: not committed (``--prune`` deletes
    them), so the repository keeps only what backs a figure."""
    pinned = {p.resolve() for p in pinned_runs(load(figures_dir), root).values()}
    return [
        run
        for exp in rep.experiments_with_results(reports_dir, rep.FIGURE_KINDS)
        for run in rep.runs(reports_dir, exp, rep.FIGURE_KINDS)
        if run.resolve() not in pinned
    ]
