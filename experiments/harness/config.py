"""The experiment file: what to vary (``matrix``), the population, the workload, the faults, the repetitions.

The server part is not re-modelled here: each cell's ``server`` mapping is validated by the server's own
:class:`core.config.Settings` (via :func:`core.config.load_settings`), so a strategy name is accepted exactly when
the server's registry and config union accept it, and the error names the path and the allowed kinds.

Matrix keys are dotted paths into the experiment. ``strategies.<kind>`` is short for ``server.strategies.<kind>``
and a plain string there is a registry name (``three_state`` means ``{kind: three_state}``); a mapping gives the
strategy's full config. Every combination of the matrix values is a cell; ``cells`` lists extra named cells.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.config import ConfigError, Settings, deep_merge, format_validation_error, load_settings
from experiments.faults.backends import PrivateBackendConfig
from experiments.load.spec import Fault, Population, ProxyConfig, Workload

BASE_DIR = Path(__file__).resolve().parents[1] / "_base"


class ExperimentError(ValueError):
    """An invalid experiment file or override, one line per problem naming the path."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CellSpec(_Spec):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.=+-]{1,80}$")]
    set: dict[str, Any] = Field(default_factory=dict)


class ClusterSpec(_Spec):
    """Nodes per cell: each a ``wsim serve`` process on its own port, sharing the data directory (SQLite files
    and JWT secret) as ``wsim cluster`` does. Clients are spread over the nodes and fail over to the next one.
    Several nodes need a cross-node bus and presence (checked per cell)."""

    nodes: Annotated[int, Field(ge=1, le=16)] = 1


class LocustSpec(_Spec):
    """The Locust driver: spawn rate and its own statistics (think time comes from the workload)."""

    spawn_rate_per_s: Annotated[float, Field(gt=0)] = 50.0
    processes: Annotated[int, Field(ge=1, le=8)] = 1


class Experiment(_Spec):
    name: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,64}$")]
    question: str = ""
    description: str = ""
    # Which metric names the report and the notebook put first (all metrics are always computed).
    headline: list[str] = Field(default_factory=lambda: ["delivery_rate", "send_ack_p99_ms"])
    server: dict[str, Any] = Field(default_factory=dict)
    matrix: dict[str, list[Any]] = Field(default_factory=dict)
    cells: list[CellSpec] = Field(default_factory=list)
    population: Population = Field(default_factory=Population)
    workload: Workload = Field(default_factory=Workload)
    faults: list[Fault] = Field(default_factory=list)
    proxy: ProxyConfig | None = None
    backends: dict[Literal["redis", "mariadb", "rabbitmq", "mongo"], PrivateBackendConfig] = Field(
        default_factory=dict
    )
    services: list[Literal["mariadb", "redis", "rabbitmq", "mosquitto", "postgresql", "nats"]] = Field(
        default_factory=list
    )
    cluster: ClusterSpec = Field(default_factory=ClusterSpec)
    driver: Literal["swarm", "locust"] = "swarm"
    locust: LocustSpec = Field(default_factory=LocustSpec)
    repetitions: Annotated[int, Field(ge=1, le=100)] = 1
    seed: int = 1
    # Keep every cell's raw ledgers (Parquet) in the report folder.
    keep_ledgers: bool = True
    # Share of clients whose ledger rows are kept on disk (1: all). The metrics are computed from every row
    # first; only the kept files (what figures such as latency CDFs read back) are a sample: rows of clients whose
    # index is a multiple of round(1 / ledger_sample). Keeps capacity runs small enough to commit.
    ledger_sample: Annotated[float, Field(gt=0, le=1)] = 1.0

    @model_validator(mode="after")
    def _rest_calls_need_the_swarm(self) -> Experiment:
        if self.driver == "locust":
            for key in REST_RATES:
                if getattr(self.workload, key) > 0:
                    raise ValueError(
                        f"workload.{key}: REST calls are driven by the swarm only; set driver: swarm or leave the "
                        "rate at 0"
                    )
        return self

    @model_validator(mode="after")
    def _faults_need_their_backend(self) -> Experiment:
        for i, f in enumerate(self.faults):
            if f.type == "backend_restart" and f.backend not in self.backends:
                raise ValueError(
                    f"faults.{i}: backend {f.backend!r} is not started by this experiment (backends)"
                )
            if f.type == "backend_restart" and f.part == "replica" and not self.backends[f.backend].replica:
                raise ValueError(
                    f"faults.{i}: backend {f.backend!r} has no replica (backends.{f.backend}.replica)"
                )
        for name, b in self.backends.items():
            if b.replica and name != "mariadb":
                raise ValueError(f"backends.{name}.replica: only mariadb can start a replica")
        return self


@dataclass(frozen=True)
class Cell:
    """One combination of matrix values: its name, the values, and the experiment with them applied."""

    name: str
    params: dict[str, Any]
    experiment: Experiment
    settings: Settings

    def server_settings(self) -> dict[str, Any]:
        return self.experiment.server


# The workload's REST call rates (all driven by the swarm).
REST_RATES = (
    "history_rate_per_user_per_s",
    "search_rate_per_user_per_s",
    "requests_rate_per_user_per_s",
    "befriend_rate_per_user_per_s",
)

# What the placeholders look like at validation time (the real values exist only once the run starts them).
PLACEHOLDER_SAMPLES = {
    "backend.redis.url": "redis://127.0.0.1:6379/0",
    "backend.mariadb.url": "mysql://root@127.0.0.1:3306/wsim",
    "backend.mariadb.replica_url": "mysql://root@127.0.0.1:3307/wsim",
    "backend.rabbitmq.url": "amqp://guest:guest@127.0.0.1:5672/",
    "backend.mongo.url": "mongodb://127.0.0.1:27017/?directConnection=true",
    "run.id": "0a1b2c3d",
}


def substitute(value: Any, mapping: dict[str, str]) -> Any:
    """Replace ``{backend.<name>.url}`` placeholders in server settings by the private instances' URLs, and
    ``{run.id}`` by a name unique to this run (prefixes on shared brokers)."""
    if isinstance(value, str):
        for k, v in mapping.items():
            value = value.replace("{" + k + "}", v)
        return value
    if isinstance(value, dict):
        return {k: substitute(v, mapping) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, mapping) for v in value]
    return value


def base_server() -> dict[str, Any]:
    """Server defaults every experiment starts from (experiments/_base/server.yaml)."""
    loaded = yaml.safe_load((BASE_DIR / "server.yaml").read_text(encoding="utf-8")) or {}
    assert isinstance(loaded, dict)
    return loaded


def _normalize_path(path: str) -> list[str]:
    parts = path.split(".")
    if parts[0] == "strategies":
        parts = ["server", *parts]
    return parts


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path in a nested mapping (creating mappings on the way); strategy shorthand applied."""
    parts = _normalize_path(path)
    if len(parts) == 3 and parts[:2] == ["server", "strategies"]:
        if (
            value is False
        ):  # YAML 1.1 reads a bare `off` as false; the only strategy name it can mean is "off"
            value = "off"
        if isinstance(value, str):
            value = {"kind": value}
    cur = data
    for i, p in enumerate(parts[:-1]):
        nxt = cur.get(p)
        if nxt is None:
            nxt = cur[p] = {}
        if not isinstance(nxt, dict):
            raise ExperimentError(f"{'.'.join(parts[: i + 1])} is not a mapping; cannot set {path}")
        cur = nxt
    # Lists of faults and the matrix are replaced whole: `--set 'matrix={...}'` says what the cells are, so a
    # key it leaves out must not stay varied from the file.
    replaced = parts[-1] == "faults" or parts == ["matrix"]
    if replaced or not isinstance(value, dict) or not isinstance(cur.get(parts[-1]), dict):
        cur[parts[-1]] = value
    elif "kind" in value:
        cur[parts[-1]] = value  # a new strategy (or backend kind) replaces the old one's options wholesale
    else:
        cur[parts[-1]] = deep_merge(cur[parts[-1]], value)


def parse_set(items: list[str]) -> dict[str, Any]:
    """``key=value`` overrides; the value is YAML (``3``, ``true``, ``[a, b]``, ``{kind: fixed}``)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*", key):
            raise ExperimentError(f"--set {item!r}: expected dotted.key=value")
        try:
            out[key] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ExperimentError(f"--set {item!r}: value is not valid YAML: {exc}") from None
    return out


def _validate(data: dict[str, Any], source: str) -> Experiment:
    try:
        return Experiment.model_validate(data)
    except ValidationError as exc:
        raise ExperimentError(format_validation_error(exc, source)) from None


def load_experiment(
    path: str | Path, overrides: dict[str, Any] | None = None
) -> tuple[Experiment, dict[str, Any]]:
    """Read, apply ``--set`` overrides, validate. Returns the model and the raw mapping (for the record)."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ExperimentError(f"experiment file not found: {p}") from None
    except yaml.YAMLError as exc:
        raise ExperimentError(f"experiment file {p} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ExperimentError(f"experiment file {p} must contain a mapping at the top level")
    data = copy.deepcopy(raw)
    for key, value in (overrides or {}).items():
        clash = _varied_key(raw, key)
        if clash is not None:
            raise ExperimentError(
                f"--set {key}: {clash} varies it per cell, so a global value would be silently replaced; "
                "change the matrix instead (--set 'matrix={<key>: [...]}') or run one cell with --cell NAME"
            )
        set_path(data, key, value)
    return _validate(data, f"experiment {p}"), data


def _varied_key(raw: dict[str, Any], key: str) -> str | None:
    """Where ``key`` is varied per cell (a matrix key or a named cell's ``set``), or None.

    A key clashes when it is the varied key, lies inside it or contains it: each cell applies its own value
    after the overrides, so the override would be lost for some part of it."""
    target = _normalize_path(key)
    if target[0] in ("matrix", "cells"):
        return None  # changing the matrix itself is fine
    varied: list[tuple[str, str]] = [(k, f"matrix key {k!r}") for k in (raw.get("matrix") or {})]
    for cell in raw.get("cells") or []:
        if isinstance(cell, dict):
            varied += [(k, f"cell {cell.get('name')!r}") for k in (cell.get("set") or {})]
    for path, where in varied:
        parts = _normalize_path(str(path))
        n = min(len(parts), len(target))
        if parts[:n] == target[:n]:
            return where
    return None


def _cell_name(params: dict[str, Any]) -> str:
    if not params:
        return "default"
    parts = []
    for key, value in params.items():
        short = key.split(".")[-1] if key.split(".")[-1] != "kind" else key.split(".")[-2]
        v = value.get("kind", json.dumps(value, sort_keys=True)) if isinstance(value, dict) else value
        parts.append(f"{short}={v}")
    return re.sub(r"[^A-Za-z0-9_.=+-]", "_", "+".join(parts))[:80]


def expand(exp: Experiment, raw: dict[str, Any]) -> list[Cell]:
    """Every matrix combination (and each named cell) as a validated :class:`Cell`.

    Each cell's server settings are validated here, so a wrong strategy name fails before anything starts,
    with the cell and the key path in the message."""
    keys = list(exp.matrix)
    products = itertools.product(*(exp.matrix[k] for k in keys)) if keys else [()]
    combos: list[tuple[str | None, dict[str, Any]]] = [
        (None, dict(zip(keys, values, strict=True))) for values in products
    ]
    combos.extend((cs.name, dict(cs.set)) for cs in exp.cells)
    if exp.cells and not keys:
        combos = combos[1:]  # only the named cells
    cells: list[Cell] = []
    problems: list[str] = []
    seen: set[str] = set()
    for name, params in combos:
        data = copy.deepcopy(raw)
        data.pop("matrix", None)
        data.pop("cells", None)
        try:
            for key, value in params.items():
                set_path(data, key, value)
        except ExperimentError as exc:
            problems.append(f"  matrix: {exc}")
            continue
        cell_name = name or _cell_name(params)
        if cell_name in seen:
            problems.append(f"  cells: duplicate cell name {cell_name!r}")
            continue
        seen.add(cell_name)
        try:
            cell_exp = Experiment.model_validate(data)
        except ValidationError as exc:
            problems.append(format_validation_error(exc, f"cell {cell_name}"))
            continue
        try:
            server = substitute(cell_exp.server, PLACEHOLDER_SAMPLES)
            settings = load_settings(None, deep_merge(base_server(), server))
        except ConfigError as exc:
            problems.append(
                str(exc).replace("invalid config", f"invalid server settings of cell {cell_name}", 1)
            )
            continue
        cluster_problem = _cluster_problem(cell_exp, settings)
        if cluster_problem:
            problems.append(f"  cell {cell_name}: {cluster_problem}")
            continue
        unavailable = _unloadable_strategies(settings)
        if unavailable:
            problems.extend(f"  cell {cell_name}: {msg}" for msg in unavailable)
            continue
        cells.append(Cell(cell_name, params, cell_exp, settings))
    if problems:
        raise ExperimentError("\n".join(problems))
    return cells


def _cluster_problem(exp: Experiment, settings: Settings) -> str | None:
    if exp.cluster.nodes == 1:
        return None
    s = settings.strategies
    if s.bus.kind == "local":
        return "a cluster needs a cross-node bus: set strategies.bus (redis, rabbitmq or mqtt), not local"
    if s.presence.kind == "memory":
        return "a cluster needs shared presence: set strategies.presence to redis, not memory"
    if exp.proxy is not None and exp.proxy.enabled:
        return "the fault proxy fronts one node; it cannot be combined with cluster.nodes > 1 yet"
    if exp.driver == "locust":
        return "the Locust driver targets one node; use the swarm driver for a cluster"
    for i, f in enumerate(exp.faults):
        if f.type == "node_kill" and f.node >= exp.cluster.nodes:
            return f"faults.{i}.node: {f.node} but the cell has {exp.cluster.nodes} node(s)"
    return None


def _unloadable_strategies(settings: Settings) -> list[str]:
    """Load each chosen implementation through its registry, so a missing optional driver is reported now
    ("install wsim-testbed[redis] ...") rather than when the node starts."""
    from core.catalog import REGISTRIES, chosen
    from strategies._registry import StrategyUnavailableError, UnknownStrategyError

    problems = []
    for key, registry in REGISTRIES:
        for config in chosen(settings, key):
            try:
                registry.load(config.kind)
            except (StrategyUnavailableError, UnknownStrategyError) as exc:
                problems.append(str(exc))
    return problems


def json_schema() -> dict[str, Any]:
    """JSON schema of the experiment file (the ``server`` part is the server settings' own schema)."""
    schema = Experiment.model_json_schema()
    server = Settings.model_json_schema()
    schema.setdefault("$defs", {}).update(server.pop("$defs", {}))
    server.pop("required", None)  # every settings key has a default
    server["description"] = "server settings overrides, validated per cell by core.config.Settings"
    schema["properties"]["server"] = server
    return schema
