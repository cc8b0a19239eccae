"""Run notebooks/07_transports.ipynb headless (nbclient): ``python -m experiments.transports.notebook [RESULTS]``.

RESULTS is a reports/transports/<run> folder (default: the newest); figures go to thesis_figures/ unless
WSIM_FIGURES_DIR says otherwise.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "07_transports.ipynb"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args:
        os.environ["WSIM_TRANSPORTS_RESULTS"] = str(Path(args[0]).resolve())
    nb = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    ).execute()
    print(f"ran {NOTEBOOK.name}; figures in {os.environ.get('WSIM_FIGURES_DIR', ROOT / 'thesis_figures')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
