"""The analysis notebooks: how they are made (one per comparison, all from one template) and run headless.

Every comparison notebook is the same template with its experiment name as a papermill parameter, so a new
experiment gets its notebook from :func:`write_notebooks`; notebooks read only ``reports/`` through
:mod:`experiments.analysis.reports` and write figures through :mod:`experiments.analysis.figures`.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import nbformat as _nbformat

from experiments.analysis.reports import NoResultsError, latest_run, run_kind

nbformat: Any = _nbformat  # nbformat has no type hints; keep the Any in one place

COMPARISONS = (
    "quickstart", "ack_loss", "retry_policies", "dedup_resends", "ordering_faults", "offline_push",
    "reconnect_storm", "concurrency", "store_backends", "cache_tiers", "cluster_bus", "network_severity",
    "heartbeat_interval", "availability_node_kill", "dedup_cluster", "write_throughput", "multi_device",
    "tiering", "read_split",
)  # fmt: skip

_SETUP = """\
import sys
from pathlib import Path

root = Path.cwd().resolve()
while not (root / "run_experiment.py").exists() and root != root.parent:
    root = root.parent
sys.path.insert(0, str(root))
reports_dir = Path(reports_dir) if Path(reports_dir).is_absolute() else root / reports_dir
figures_dir = Path(figures_dir) if Path(figures_dir).is_absolute() else root / figures_dir

from experiments.analysis import figures, reports

font = figures.setup_style()
"""

_COMPARISON = [
    (
        "markdown",
        "# {title}\n\nReads the run given as ``run`` (pinned in `thesis_figures/manifest.json` by "
        "``run_experiment.py --figures``), or else the latest run of the experiment under `reports/`, and writes "
        "`thesis_figures/<experiment>__<metric>.png|pdf`: one bar chart per headline metric (mean over "
        "repetitions, error bars = standard deviation, n = events behind the figure) and the send->deliver "
        "latency CDF (first release by any path: push or sync).",
    ),
    (
        "parameters",
        'experiment = "{name}"\nreports_dir = "reports"\nfigures_dir = "thesis_figures"\nrun = None',
    ),
    ("code", _SETUP),
    (
        "code",
        "run_dir = Path(run) if run else reports.latest_run(reports_dir, experiment)\n"
        "question = reports.resolved(run_dir)['experiment']['question']\n"
        "print(run_dir.name, '-', question)\n"
        "reports.summary_table(run_dir)",
    ),
    (
        "code",
        "saved = []\n"
        "for metric in reports.drawn_metrics(run_dir):\n"
        "    stats = reports.metric_stats(run_dir, metric)\n"
        "    fig = figures.comparison_bar(stats, metric)\n"
        "    saved += figures.save(fig, experiment, metric, figures_dir)\n"
        "samples = reports.deliver_latency_ms(run_dir, via='any')  # push or sync: when it became visible\n"
        "if any(len(v) for v in samples.values()):\n"
        "    fig = figures.latency_cdf(samples, figures.label('send_deliver_all_p50_ms').replace(' P50', '').replace(' p50', ''))\n"
        "    saved += figures.save(fig, experiment, 'send_deliver_cdf', figures_dir)\n"
        "history = reports.history_latency_ms(run_dir)  # client-timed history pages, when the run read any\n"
        "if any(len(v) for v in history.values()):\n"
        "    fig = figures.latency_cdf(history, figures.label('history_read_p99_ms').replace(' P99', '').replace(' p99', ''))\n"
        "    saved += figures.save(fig, experiment, 'history_cdf', figures_dir)\n"
        "for kind, samples in reports.rest_latency_ms(run_dir).items():  # account calls (search, ...), if any\n"
        "    fig = figures.latency_cdf(samples, figures.label(f'rest_{kind}_p99_ms').replace(' P99', '').replace(' p99', ''))\n"
        "    saved += figures.save(fig, experiment, f'rest_{kind}_cdf', figures_dir)\n"
        "[p.name for p in saved]",
    ),
]

_SUMMARY = [
    (
        "markdown",
        "# Summary of all experiments\n\nThe headline metric of every pinned run (``runs``, a JSON mapping "
        "experiment -> run folder, given by ``run_experiment.py --figures``), or of the latest run of every "
        "experiment under `reports/` when none is given, one panel each: "
        "`thesis_figures/summary__headline.png|pdf`.",
    ),
    ("parameters", 'reports_dir = "reports"\nfigures_dir = "thesis_figures"\nruns = ""'),
    ("code", _SETUP),
    (
        "code",
        "import json\n"
        "pinned = {k: Path(v) for k, v in json.loads(runs).items()} if runs else {\n"
        "    exp: reports.latest_run(reports_dir, exp) for exp in reports.experiments_with_results(reports_dir)\n"
        "}\n"
        "panels = []\n"
        "for exp in sorted(pinned):\n"
        "    run_dir = pinned[exp]\n"
        "    for metric in reports.headline(run_dir)[:1]:\n"
        "        panels.append((exp, metric, reports.metric_stats(run_dir, metric)))\n"
        "assert panels, f'no results under {reports_dir}'\n"
        "fig = figures.headline_grid(panels)\n"
        "[p.name for p in figures.save(fig, 'summary', 'headline', figures_dir)]",
    ),
]


def _notebook(cells: list[tuple[str, str]], **fmt: str) -> Any:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["wsim"] = {"template": "summary" if "name" not in fmt else "comparison", **fmt}
    for i, (kind, src) in enumerate(cells):
        text = src.format(**fmt) if kind != "code" else src
        if kind == "markdown":
            cell = nbformat.v4.new_markdown_cell(text)
        else:
            cell = nbformat.v4.new_code_cell(text)
            if kind == "parameters":
                cell.metadata["tags"] = ["parameters"]
        cell.id = (
            f"{fmt.get('name', 'summary')}-{i}"  # stable: regenerating a notebook changes only what changed
        )
        nb.cells.append(cell)
    return nb


def notebook_path(directory: Path, index: int, name: str) -> Path:
    return directory / f"{index:02d}_{name}.ipynb"


def write_notebooks(directory: Path, experiments: Iterable[str] = COMPARISONS) -> list[Path]:
    """(Re)generate the summary notebook and one notebook per comparison."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / "00_summary.ipynb"]
    nbformat.write(_notebook(_SUMMARY), paths[0])
    for i, name in enumerate(experiments, start=1):
        path = notebook_path(directory, i, name)
        nbformat.write(_notebook(_COMPARISON, name=name, title=name.replace("_", " ").capitalize()), path)
        paths.append(path)
    return paths


def experiment_of(path: Path) -> str | None:
    stem = path.stem
    return None if stem.endswith("_summary") else stem.split("_", 1)[1]


def is_template_notebook(path: Path) -> bool:
    """Made by :func:`write_notebooks` (others, like 07_transports, bring their own parameters and runner)."""
    return "wsim" in nbformat.read(str(path), as_version=4).metadata


def run_notebooks(
    directory: Path,
    *,
    reports: Path,
    figures: Path | None = None,
    output_dir: Path | None = None,
    parameters: dict[str, str] | None = None,
    runs: dict[str, Path] | None = None,
    timeout_s: int = 600,
) -> list[Path]:
    """Execute every notebook headless (papermill) into ``output_dir`` (the tracked notebooks are never
    rewritten); skip comparisons that have no results yet, with a note.

    ``runs`` pins the run folder each comparison reads (and the summary's panels); without it each reads the
    latest run. ``parameters`` override each template notebook's. The notebooks are independent (each reads
    runs and writes its own figure files), so they run one per CPU at a time (at most 4):
    most of a notebook's time is its kernel starting and importing pandas and matplotlib."""
    import json
    import os
    import tempfile

    figures = figures or reports.parent / "thesis_figures"
    if output_dir is None:
        output_dir = Path(tempfile.mkdtemp(prefix="wsim-notebooks-"))
    output_dir.mkdir(parents=True, exist_ok=True)
    todo: list[tuple[Path, Path, dict[str, str]]] = []
    for path in sorted(directory.glob("*.ipynb")):
        exp = experiment_of(path)
        out = output_dir / path.name
        if not is_template_notebook(path):
            # A notebook of its own kind (07_transports reads experiments/transports/run.py's folders): run it
            # on its pinned run (or, unpinned, where its results exist), never with template overrides.
            own: dict[str, str] = {"figures_dir": str(figures)}
            if runs is not None and exp in runs:
                own["results_dir"] = str(runs[exp].resolve())
            if (
                parameters
                or exp is None
                or (runs is not None and exp not in runs)
                or not any((reports / exp).glob("*/"))
            ):
                print(
                    f"skipping {path.name}: not a template notebook, or no pinned run or reports/{exp}/ results"
                )
                continue
            todo.append((path, out, own))
            continue
        params: dict[str, str] = {"reports_dir": str(reports), "figures_dir": str(figures)}
        if exp is not None:
            params["experiment"] = exp
        elif runs is not None:
            if not runs:
                print(f"skipping {path.name}: no run is pinned")
                continue
            summarized = {k: v for k, v in runs.items() if run_kind(v) == "experiment"}
            params["runs"] = json.dumps({k: str(v.resolve()) for k, v in sorted(summarized.items())})
        params.update(parameters or {})
        if exp is not None:
            if runs is not None:
                if params["experiment"] not in runs:
                    print(f"skipping {path.name}: no run of {params['experiment']} is pinned")
                    continue
                params["run"] = str(runs[params["experiment"]].resolve())
            else:
                try:
                    latest_run(reports, params["experiment"])
                except NoResultsError as exc:
                    print(f"skipping {path.name}: {exc}")
                    continue
        todo.append((path, out, params))
    workers = max(1, min(os.cpu_count() or 1, 4, len(todo)))
    if workers == 1:
        for path, out, params in todo:
            _execute(path, out, params, timeout_s)
    else:
        # Processes, not threads: papermill's kernel clients share zmq and event-loop state per process. Spawned,
        # not forked: the caller may have threads (pytest-xdist's, a server's writer).
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            futures = [pool.submit(_execute, path, out, params, timeout_s) for path, out, params in todo]
            for fut in futures:
                fut.result()  # the first failure is raised, in notebook order
    return [out for _, out, _ in todo]


def _execute(path: Path, out: Path, params: dict[str, str], timeout_s: int) -> None:
    import papermill as pm

    pm.execute_notebook(
        str(path), str(out), parameters=params, cwd=str(path.parent), kernel_name="python3",
        progress_bar=False, execution_timeout=timeout_s,
    )  # fmt: skip
