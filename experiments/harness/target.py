"""External targets: drive an already running deployment (the Compose stack, a server elsewhere) instead of
starting nodes.

``run_experiment.py X.yaml --target URL[,URL...]`` gives every selected cell the same deployment;
``--target CELL=URL[,URL...]`` (repeatable) gives a cell its own, e.g. one Compose node per message store. Each URL
is a node's (or a load balancer's) HTTP base: the population is built over the first one's REST API, clients are
spread over all of them (``ws(s)://<host>/ws``) and fail over like a local cluster, and ``/metrics`` is scraped from
each when it answers (the run's metadata says when it does not).

What a target cannot do is refused before anything runs: faults that need process control (``node_kill``,
``backend_restart``), the fault proxy, ``cluster.nodes`` > 1. A cell's ``server`` settings and ``backends`` are not
applied: the deployment runs its own configuration, which the run's metadata says beside the target.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from experiments.harness.config import Cell, ExperimentError

ALL_CELLS = "*"


@dataclass
class Target:
    """One external deployment: node base URLs (``http(s)://host:port``, no path)."""

    urls: list[str]
    metrics_errors: list[str] = field(default_factory=list)

    @property
    def rest_url(self) -> str:
        return self.urls[0]

    @property
    def ws_urls(self) -> list[str]:
        return [re.sub(r"^http", "ws", u, count=1) + "/ws" for u in self.urls]

    async def scrape(self, url: str) -> str:
        """``/metrics`` of one node, or "" (and a note in ``metrics_errors``) when it does not answer."""
        try:
            async with httpx.AsyncClient(timeout=10.0) as http:
                resp = await http.get(url + "/metrics")
                resp.raise_for_status()
                return resp.text
        except httpx.HTTPError as exc:
            note = f"{url}/metrics: {type(exc).__name__}: {exc}"[:300]
            if note not in self.metrics_errors:
                self.metrics_errors.append(note)
            return ""


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise ExperimentError(
            f"--target {url!r}: expected a node's base URL such as http://localhost:8080 (no path; the "
            "WebSocket is its /ws, the metrics its /metrics)"
        )
    return url.rstrip("/")


def parse_targets(items: list[str]) -> dict[str, list[str]]:
    """``URL[,URL...]`` (every cell) or ``CELL=URL[,URL...]`` (one cell) -> {cell or "*": [url, ...]}."""
    out: dict[str, list[str]] = {}
    for item in items:
        # cell names may hold "=" themselves (ack=off): the URLs start at the first scheme
        match = re.fullmatch(r"(?:(.*?)=)?([a-z][a-z0-9+.-]*://.*)", item, re.DOTALL)
        cell, rest = (match.group(1) or ALL_CELLS, match.group(2)) if match else (ALL_CELLS, item)
        if cell in out:
            raise ExperimentError(f"--target: {cell if cell != ALL_CELLS else 'every cell'} is given twice")
        urls = [_check_url(u.strip()) for u in rest.split(",") if u.strip()]
        if not urls:
            raise ExperimentError(f"--target {item!r}: no URL")
        out[cell] = urls
    return out


def _refusals(cell: Cell) -> list[str]:
    exp = cell.experiment
    out = [
        f"faults.{i} ({f.type}) needs process control of the server, which an external target does not give"
        for i, f in enumerate(exp.faults)
        if f.type in ("node_kill", "backend_restart")
    ]
    if exp.proxy is not None and exp.proxy.enabled:
        out.append("the fault proxy fronts a node the harness starts; it cannot front an external target")
    if exp.population.history is not None:
        out.append("population.history writes old messages through the node's own message store, which an "
                   "external target does not expose")  # fmt: skip
    if exp.cluster.nodes > 1:
        out.append("cluster.nodes starts local nodes; give one URL per node instead (--target URL1,URL2)")
    return out


def assign_targets(cells: list[Cell], targets: dict[str, list[str]]) -> dict[str, Target]:
    """The target of every cell, or a clear error: unknown cell names, cells left without one, refused features."""
    names = [c.name for c in cells]
    unknown = [k for k in targets if k != ALL_CELLS and k not in names]
    if unknown:
        raise ExperimentError(
            f"--target names unknown or unselected cell(s) {', '.join(unknown)}; cells: {', '.join(names)}"
        )
    problems: list[str] = []
    out: dict[str, Target] = {}
    for cell in cells:
        urls = targets.get(cell.name, targets.get(ALL_CELLS))
        if urls is None:
            problems.append(
                f"  cell {cell.name}: no --target for it (give one, or run only the targeted cells with --cell)"
            )
            continue
        problems.extend(f"  cell {cell.name}: {p}" for p in _refusals(cell))
        out[cell.name] = Target(list(urls))
    if problems:
        raise ExperimentError("cannot run against an external target:\n" + "\n".join(problems))
    return out
