"""Run a wsim experiment, or regenerate the thesis figures.

    python run_experiment.py experiments/quickstart.yaml [--set key=value ...] [--dry-run]
    python run_experiment.py --figures            # execute every notebook headless -> thesis_figures/
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
    p.add_argument("--reports", type=Path, default=ROOT / "reports", help="where result folders go")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--figures", action="store_true", help="execute every notebook headless")
    p.add_argument("--notebooks", type=Path, default=ROOT / "notebooks")
    p.add_argument("--schema", action="store_true", help="print the experiment JSON schema")
    args = p.parse_args(argv)

    if args.schema:
        print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
        return 0
    if args.figures:
        from experiments.analysis.notebooks import run_notebooks

        for path in run_notebooks(args.notebooks, reports=args.reports):
            print(f"executed {path}")
        return 0
    if not args.experiment:
        p.error("give an experiment file, --figures or --schema")
    try:
        exp, raw = load_experiment(args.experiment, parse_set(args.set))
        if args.dry_run:
            from experiments.harness.runner import describe

            print(describe(exp, raw, args.cell))
            return 0
        from experiments.harness.runner import run_experiment

        out = asyncio.run(
            run_experiment(
                exp, raw, args.reports, [sys.argv[0], *sys.argv[1:]], progress=not args.no_progress
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
