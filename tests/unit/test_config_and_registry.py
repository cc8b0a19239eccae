from __future__ import annotations

import ast
import importlib
import inspect
import typing
from pathlib import Path
from typing import Any, Literal

import pytest

from core import catalog
from core.catalog import REGISTRIES
from core.config import ConfigError, load_settings
from strategies import dedup, retry, store
from strategies._registry import (
    Registry,
    StrategyConfig,
    StrategyUnavailableError,
    UnknownStrategyError,
    config_models,
)
from strategies.dedup.config import DedupConfig, DedupOffConfig, RedisDedupConfig
from tests.support.context import strategy_context
from tests.support.services import unavailable

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_the_embedded_stack() -> None:
    s = load_settings()
    st = s.strategies
    assert (st.store.users.kind, st.store.messages.kind, st.bus.kind, st.cache.kind, st.dedup.kind) == (
        "sqlite",
        "sqlite",
        "local",
        "l1",
        "memory",
    )
    assert (st.ack.kind, st.retry.kind, s.heartbeat.interval_s) == ("three_state", "adaptive", 30.0)


def test_yaml_then_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("server:\n  port: 9001\nstrategies:\n  retry:\n    kind: fixed\n    interval_s: 0.5\n")
    monkeypatch.setenv("WSIM_SERVER__PORT", "9002")
    monkeypatch.setenv("WSIM_STRATEGIES__DEDUP__KIND", "off")
    s = load_settings(cfg)
    assert s.server.port == 9002
    assert s.strategies.retry.kind == "fixed" and s.strategies.retry.interval_s == 0.5
    assert s.strategies.dedup.kind == "off"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"strategies": {"dedup": {"kind": "bloom"}}}, ["strategies.dedup", "'bloom'", "'memory'", "'off'"]),
        ({"server": {"colour": "red"}}, ["server.colour: unknown key"]),
        (
            {"strategies": {"retry": {"kind": "fixed", "interval_s": -1}}},
            ["strategies.retry.fixed.interval_s"],
        ),
        ({"limits": {"rate_per_s": "fast"}}, ["limits.rate_per_s"]),
    ],
)
def test_invalid_config_names_the_key_and_allowed_values(
    overrides: dict[str, object], expected: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, overrides)
    for fragment in expected:
        assert fragment in str(info.value)


def test_missing_or_bad_yaml_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(bad)


ALL = [(registry, name) for _, registry in REGISTRIES for name in registry.names()]


@pytest.mark.parametrize(("registry", "name"), ALL, ids=lambda v: v if isinstance(v, str) else v.kind)
def test_every_registered_name_imports_and_takes_config_and_context(
    registry: Registry[Any, Any], name: str
) -> None:
    """Every implementation loads (a missing optional driver fails in CI, where every extra is installed) and is
    built as ``Class(config, ctx)``, so the registry needs no per-kind arguments."""
    try:
        cls = registry.load(name)
    except StrategyUnavailableError as exc:
        unavailable(str(exc))
    assert isinstance(cls, type)
    params = list(inspect.signature(cls).parameters.values())
    required = [p for p in params if p.default is inspect.Parameter.empty]
    # Positional (config, ctx); transports name their context after what it is (the node port).
    assert len(required) == 2 and required[0].name == "config", f"{cls.__name__}{inspect.signature(cls)}"
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in required)
    annotations = typing.get_type_hints(cls.__init__)
    model = registry.models[name]
    config_type = annotations["config"]
    assert config_type is model or model in typing.get_args(config_type), "it takes its own config model"


def test_registry_is_the_config_union() -> None:
    """The registry and the YAML schema come from the same list: the union in config.py."""
    assert set(dedup.REGISTRY.models) == {m.model_fields["kind"].default for m in config_models(DedupConfig)}
    assert dedup.REGISTRY.models["redis"] is RedisDedupConfig
    assert dedup.REGISTRY.entries["redis"] == RedisDedupConfig.implementation
    assert dedup.REGISTRY.extras == {"redis": "redis"}
    # One database config serves two registries, each naming its own class.
    assert store.USER_STORES.entries["sqlite"].endswith(":SqliteUserStore")
    assert store.MESSAGE_STORES.entries["sqlite"].endswith(":SqliteMessageStore")


def test_every_registry_is_documented() -> None:
    """Each Registry defined under strategies/ is in core.catalog.REGISTRIES (so in the tables and here)."""
    listed = {id(r) for _, r in REGISTRIES}
    found = []
    for path in sorted((ROOT / "strategies").glob("*/__init__.py")):
        module = importlib.import_module(f"strategies.{path.parent.name}")
        found += [
            f"{module.__name__}.{k}"
            for k, v in vars(module).items()
            if isinstance(v, Registry) and id(v) not in listed
        ]
    assert found == []


def test_create_refuses_another_kinds_config(tmp_path: Path) -> None:
    class Impostor(DedupOffConfig):
        pass

    with pytest.raises(TypeError, match="takes DedupOffConfig, not Impostor"):
        dedup.REGISTRY.create(Impostor(), strategy_context(tmp_path))


def test_unknown_kind_lists_known_ones() -> None:
    with pytest.raises(
        UnknownStrategyError, match=r"unknown retry kind 'wild'.*'exponential', 'fixed', 'none'"
    ):
        retry.REGISTRY.load("wild")


class FancyBusConfig(StrategyConfig, implementation="wsim_no_such_driver_pkg:Bus", pip_extra="fancy"):
    """A bus whose driver is not installed."""

    kind: Literal["fancy"] = "fancy"


def test_missing_driver_gives_install_hint() -> None:
    reg: Registry[object, object] = Registry("bus", FancyBusConfig)
    with pytest.raises(
        StrategyUnavailableError, match=r"install wsim-testbed\[fancy\] to use bus kind 'fancy'"
    ):
        reg.load("fancy")


def test_a_model_needs_a_literal_kind_and_an_implementation() -> None:
    class Loose(StrategyConfig, implementation="x:Y"):
        pass

    class Nameless(StrategyConfig):
        kind: Literal["nameless"] = "nameless"

    with pytest.raises(TypeError, match=r"Loose\.kind needs a Literal default"):
        Registry("bus", Loose)
    with pytest.raises(TypeError, match="Nameless names no implementation"):
        Registry("bus", Nameless)


def test_strategy_tables_in_the_docs_are_current() -> None:
    """README.md and docs/architecture.md carry the tables generated from the registries."""
    assert catalog.main(["--check"]) == 0, "run python -m core.catalog and commit the tables"


ALLOWED_STRATEGY_IMPORTS = ("strategies._registry", "strategies.context")


def _strategy_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("strategies"):
            if node.module == "strategies":
                names += [f"strategies.{a.name}" for a in node.names]
            else:
                names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names if a.name.startswith("strategies")]
    return names


def test_core_never_imports_a_concrete_strategy() -> None:
    """core/ may import interfaces (base), configs and registries, never an implementation module."""
    offenders = []
    for path in sorted((ROOT / "core").rglob("*.py")):
        for name in _strategy_imports(path):
            parts = name.split(".")
            ok = (
                name in ALLOWED_STRATEGY_IMPORTS
                or len(parts) == 2  # the registry package itself: strategies.<kind>
                or (len(parts) == 3 and parts[2] in ("base", "config"))
            )
            if not ok:
                offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert offenders == []
