"""Where and on what a result was produced: every result folder carries this (STYLE.md principle 8)."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[2]
LIBRARIES = (
    "wsim-testbed", "uvicorn", "websockets", "fastapi", "starlette", "pydantic", "orjson", "aiosqlite", "uvloop",
    "httptools", "hdrhistogram", "locust", "pandas", "pyarrow", "matplotlib", "psutil",
)  # fmt: skip


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip()


def in_checkout() -> bool:
    return _git("rev-parse", "--is-inside-work-tree") == "true"


def git_sha() -> str:
    """The commit; outside a checkout (the experiment image) the one the image was built from (build arg
    ``GIT_SHA`` -> ``WSIM_GIT_SHA``), else "nogit"."""
    return _git("rev-parse", "--short=10", "HEAD") or os.environ.get("WSIM_GIT_SHA") or "nogit"


def git_dirty() -> bool:
    """Modified tracked files. Outside a checkout nothing can be checked: dirty unless the image's build said its
    tree was clean (``WSIM_GIT_DIRTY=false``), so such a run is never pinned as clean by accident."""
    if not in_checkout():
        return os.environ.get("WSIM_GIT_DIRTY", "unknown") != "false"
    return bool(_git("status", "--porcelain", "--untracked-files=no"))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


# What produced a result folder. ``--figures`` reads only "experiment" runs and skips the others by this field
# (or, for folders written before it existed, by their lack of config.resolved.yaml).
RUN_KINDS = (
    "experiment", "bench_core", "bench_storage", "bench_sqlite_commit", "campaign", "cluster_bench", "transports",
)  # fmt: skip


def metadata(kind: str = "experiment") -> dict[str, Any]:
    if kind not in RUN_KINDS:
        raise ValueError(f"unknown run kind {kind!r}; known: {', '.join(RUN_KINDS)}")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {
        "kind": kind,
        "git_sha": git_sha(),
        "git_dirty": git_dirty(),
        "utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "load_average": list(os.getloadavg()),
        "open_files_limit": [soft, hard],
        "libraries": versions(),
    }


def save_diff(out: Path) -> Path | None:
    """A run made from a modified tree keeps the modification (``git.diff``), so it can be reproduced."""
    if not git_dirty() or not in_checkout():
        return None
    path = out / "git.diff"
    path.write_text(_git("diff", "HEAD") + "\n", encoding="utf-8")
    return path


def run_dir(base: Path, experiment: str) -> Path:
    """``<base>/<experiment>/<UTC-time>-<git-sha>/`` (created; never reused)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = base / experiment / f"{stamp}-{git_sha()}"
    n = 1
    while path.exists():
        n += 1
        path = base / experiment / f"{stamp}-{git_sha()}-{n}"
    path.mkdir(parents=True)
    return path
