"""Run a wsim experiment, or regenerate the thesis figures.

    python run_experiment.py experiments/quickstart.yaml [--set key=value ...] [--dry-run]
    python run_experiment.py experiments/quickstart.yaml --target http://localhost:8080   # an external deployment
    python run_experiment.py --figures            # redraw thesis_figures/ from the runs its manifest pins
    python run_experiment.py --figures --latest   # re-pin each experiment to its newest clean run, then redraw
    python run_experiment.py --schema             # print the experiment file's JSON schema

See docs/experiments.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from core.config import ConfigError  # noqa: E402
from experiments.harness.config import ExperimentError, json_schema, load_experiment, parse_set  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", nargs="?", help="experiments/<name>.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a dotted key")
    p.add_argument("--dry-run", action="store_true", help="validate and print the plan; start nothing")
    p.add_argument(
        "--cell", action="append", default=[], metavar="NAME", help="run only this cell (repeatable)"
    )
    p.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="[CELL=]URL[,URL...]",
        help="drive an already running deployment instead of starting nodes (every cell, or CELL's; repeatable)",
    )
    p.add_argument("--reports", type=Path, default=ROOT / "reports", help="where result folders go")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--figures",
        action="store_true",
        help="redraw thesis_figures/ from the runs pinned in its manifest.json",
    )
    p.add_argument(
        "--latest", action="store_true", help="with --figures: pin each experiment's newest clean run"
    )
    p.add_argument(
        "--allow-dirty", action="store_true", help="with --figures: accept runs from a modified tree"
    )
    p.add_argument(
        "--prune",
        action="store_true",
        help="delete experiment runs no figure is drawn from (see the manifest)",
    )
    p.add_argument("--figures-dir", type=Path, default=ROOT / "thesis_figures")
    p.add_argument(
        "--executed",
        type=Path,
        default=None,
        help="where executed notebook copies go (default: a temp folder)",
    )
    p.add_argument("--notebooks", type=Path, default=ROOT / "notebooks")
    p.add_argument("--schema", action="store_true", help="print the experiment JSON schema")
    args = p.parse_args(argv)

    if args.schema:
        print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
        return 0
    if args.prune:
        import shutil

        from experiments.analysis.manifest import FigureError, unpinned_runs

        try:
            stale = unpinned_runs(args.reports, args.figures_dir, ROOT)
        except FigureError as exc:
            print(f"run_experiment: {exc}", file=sys.stderr)
            return 2
        for run in stale:
            shutil.rmtree(run)
            print(f"deleted {run}")
        return 0
    if args.figures:
        from experiments.analysis.manifest import FigureError, rebuild

        try:
            done = rebuild(
                root=ROOT,
                notebooks_dir=args.notebooks,
                reports_dir=args.reports,
                figures_dir=args.figures_dir,
                latest=args.latest,
                allow_dirty=args.allow_dirty,
                executed_dir=args.executed,
            )
        except FigureError as exc:
            print(f"run_experiment: {exc}", file=sys.stderr)
            return 2
        for note in done.notes:
            print(f"note: {note}")
        for path in done.notebooks:
            print(f"executed {path}")
        print(
            f"figures: {len(done.unchanged)} byte-identical, {len(done.changed)} changed, {len(done.new)} new; "
            f"manifest {args.figures_dir / 'manifest.json'}"
        )
        for name in done.changed:
            print(f"  changed: {name}")
        return 0
    if not args.experiment:
        p.error("give an experiment file, --figures or --schema")
    try:
        exp, raw = load_experiment(args.experiment, parse_set(args.set))
        if args.dry_run:
            from experiments.harness.runner import describe

            print(describe(exp, raw, args.cell, args.target or None))
            return 0
        from experiments.harness.runner import run_experiment

        out = asyncio.run(
            run_experiment(
                exp,
                raw,
                args.reports,
                [sys.argv[0], *sys.argv[1:]],
                progress=not args.no_progress,
                only=args.cell or None,
                targets=args.target or None,
            )
        )
    except (ExperimentError, ConfigError) as exc:
        print(f"run_experiment: {exc}", file=sys.stderr)
        return 2
    print((out / "report.md").read_text(encoding="utf-8"))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
