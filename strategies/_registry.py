"""One explicit registry per strategy kind (STYLE.md principle 3).

A registry maps a short name to a lazy ``"module:Class"`` string. Nothing is imported until a name is chosen, so
the base install never needs optional drivers; a missing driver gives an install hint instead of a traceback.
Configuration may name only registered entries: an unknown name fails listing the known ones.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

T = TypeVar("T")


class UnknownStrategyError(LookupError):
    pass


class StrategyUnavailableError(RuntimeError):
    """The chosen implementation needs a package that is not installed."""


@dataclass(frozen=True)
class Registry(Generic[T]):
    kind: str
    entries: dict[str, str]
    # name -> pip extra that provides its driver (e.g. "redis" -> "redis")
    extras: dict[str, str] = field(default_factory=dict)

    def names(self) -> list[str]:
        return sorted(self.entries)

    def load(self, name: str) -> type[T]:
        try:
            target = self.entries[name]
        except KeyError:
            known = ", ".join(repr(n) for n in self.names())
            raise UnknownStrategyError(f"unknown {self.kind} kind {name!r}; known kinds: {known}") from None
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            extra = self.extras.get(name)
            if extra is None or (exc.name or "").startswith(("strategies", "core")):
                raise
            raise StrategyUnavailableError(
                f"install wsim-testbed[{extra}] to use {self.kind} kind {name!r} (missing module {exc.name!r})"
            ) from exc
        cls: type[T] = getattr(module, attr)
        return cls

    def create(self, config: Any, *args: Any, **kwargs: Any) -> T:
        """Build the implementation named by ``config.kind`` with ``config`` and the shared context."""
        factory = cast("Callable[..., T]", self.load(config.kind))
        return factory(config, *args, **kwargs)
