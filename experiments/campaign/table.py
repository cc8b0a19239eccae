"""``python -m experiments.campaign.table REPORT_DIR [--doc docs/reliability.md]``: put a campaign run's table
into the document, between its ``campaign-table`` markers, so the figures there always come from a run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from experiments.campaign.runner import table

START, END = "<!-- campaign-table:start -->", "<!-- campaign-table:end -->"


def render(report: Path) -> str:
    summary = json.loads((report / "summary.json").read_text(encoding="utf-8"))
    meta = json.loads((report / "metadata.json").read_text(encoding="utf-8"))
    command = " ".join(meta["command"])
    return (
        f"{START}\nFrom `{command}` at commit `{meta['git_sha']}` ({meta['utc']}, {meta['cpu_count']} CPUs), "
        f"report `{report}`:\n\n{table(summary['faults'])}\n{END}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.campaign.table", description=__doc__)
    p.add_argument("report", type=Path)
    p.add_argument("--doc", type=Path, default=Path("docs/reliability.md"))
    args = p.parse_args(argv)
    text = args.doc.read_text(encoding="utf-8")
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    args.doc.write_text(head + render(args.report) + tail, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
