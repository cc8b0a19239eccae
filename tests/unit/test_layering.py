"""Layers point one way (docs/architecture.md, "Layers"): the kernel at the bottom imports nothing of ours above
it; a strategy imports the kernel, the registry and context modules, its own kind, and the interfaces (``base``)
and configs of the kinds it composes, never the node. No exceptions list: a new edge that breaks the rule fails
here. The other direction (core never imports a concrete strategy) is
tests/unit/test_config_and_registry.py::test_core_never_imports_a_concrete_strategy."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The bottom layer: plain records, ids, errors, time, metrics, and the wire protocol's pure codecs (every
# transport and client speaks them).
KERNEL = frozenset(
    {
        "core.types",
        "core.models",
        "core.errors",
        "core.clock",
        "core.metrics",
        "core.protocol.frames",
        "core.protocol.codec",
        "core.protocol.stomp",
        "core.protocol.mqtt_auth",
    }
)
# Shared by every kind; _aio and _redis are plumbing (task shutdown, Redis connect/close) several kinds' backends
# use alike, and import nothing of ours (docs/architecture.md, "Layers").
STRATEGY_SHARED = frozenset(
    {"strategies._registry", "strategies.context", "strategies._aio", "strategies._redis"}
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[str]:
    """Every module of ours that ``path`` imports (at any depth, TYPE_CHECKING included), absolute."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
            if base in ("core", "strategies") or (node.level and not node.module):
                names += [f"{base}.{a.name}" for a in node.names]
            else:
                names.append(base)
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
    return [n for n in names if n.split(".")[0] in ("core", "strategies")]


def _allowed_for_strategy(module: str, imported: str) -> bool:
    if imported in KERNEL or imported in STRATEGY_SHARED:
        return True
    parts = imported.split(".")
    if parts[0] != "strategies" or len(parts) < 2:
        return False
    own = module.split(".")
    if len(own) >= 2 and f"strategies.{own[1]}" not in STRATEGY_SHARED and parts[1] == own[1]:
        return True  # its own kind (its registry package included)
    # The interface or config of a kind it composes (a tiered store its stores, the store config its timeline).
    return len(parts) == 3 and parts[2] in ("base", "config")


def test_kernel_imports_only_the_kernel() -> None:
    offenders = []
    for name in sorted(KERNEL):
        path = ROOT / (name.replace(".", "/") + ".py")
        assert path.exists(), f"kernel module {name} moved: update KERNEL and docs/architecture.md"
        offenders += [f"{name}: {i}" for i in _imports(path) if i not in KERNEL]
    assert offenders == []


def test_strategies_import_only_the_kernel_and_strategy_interfaces() -> None:
    offenders = []
    for path in sorted((ROOT / "strategies").rglob("*.py")):
        module = _module_name(path)
        offenders += [f"{module}: {i}" for i in _imports(path) if not _allowed_for_strategy(module, i)]
    assert offenders == []


def test_the_rule_catches_what_it_forbids() -> None:
    """The rule itself, on the edges this test exists to stop (the ones issue 15 found)."""
    assert not _allowed_for_strategy("strategies.transport.mqtt", "core.app")
    assert not _allowed_for_strategy("strategies.transport.stomp", "core.node")
    assert not _allowed_for_strategy("strategies.transport.stomp", "core.transport.link")
    assert not _allowed_for_strategy("strategies.ack.policies", "core.protocol.session")
    assert not _allowed_for_strategy("strategies.store.tiered", "strategies.cache.redis")
    assert not _allowed_for_strategy("strategies.context", "core.config")
    assert _allowed_for_strategy("strategies.store.tiered", "strategies.store.sqlite")
    assert _allowed_for_strategy("strategies.ack.tracking", "strategies.retry.base")
    assert _allowed_for_strategy("strategies.store.group_commit", "core.metrics")
