"""One explicit registry per strategy kind (STYLE.md principle 3), derived from the kind's config models.

Each config model names its implementation (:attr:`StrategyConfig.implementation`, a lazy ``"module:Class"``
string, given in its class statement) and the pip extra that provides its driver; a registry is built from the
kind's config union, so the union in ``strategies/<kind>/config.py`` is the one list of what exists: adding a
model to it registers the strategy, validates it in YAML, lists it in the docs (``python -m core.catalog``) and
puts it through the kind's contract suite. Nothing is imported until a name is chosen, so the base install never needs optional
drivers; a missing driver gives an install hint instead of a traceback. An unknown name fails listing the known
ones. Every implementation is built the same way, ``Class(config, ctx)``; the context type is the registry's
second parameter (most kinds take :class:`~strategies.context.StrategyContext`).
"""

from __future__ import annotations

import importlib
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Generic, TypeVar, cast

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")
C = TypeVar("C")


class UnknownStrategyError(LookupError):
    pass


class StrategyUnavailableError(RuntimeError):
    """The chosen implementation needs a package that is not installed."""


class StrategyConfig(BaseModel):
    """Base of every strategy config model: ``kind`` (a ``Literal`` in each model) is the name YAML uses, and the
    class statement names the implementation, ``class RedisBusConfig(StrategyConfig,
    implementation="strategies.bus.redis:RedisBus", pip_extra="redis")``."""

    model_config = ConfigDict(extra="forbid")
    kind: str
    # "module:Class" built with (config, ctx). A model shared by several registries (one database config for the
    # user store and the message store) maps each registry's kind to its class instead.
    implementation: ClassVar[str | Mapping[str, str]]
    # The wsim-testbed extra that installs the implementation's driver (None: the base install has it).
    pip_extra: ClassVar[str | None] = None

    def __init_subclass__(
        cls,
        *,
        implementation: str | Mapping[str, str] | None = None,
        pip_extra: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Class arguments, so the declaration is one line; a subclass inherits what it does not restate."""
        super().__init_subclass__(**kwargs)
        if implementation is not None:
            cls.implementation = implementation
        if pip_extra is not None:
            cls.pip_extra = pip_extra


def config_models(configs: object) -> tuple[type[StrategyConfig], ...]:
    """The models of a config union (``Annotated[A | B, Field(discriminator="kind")]``) or a single model."""
    if typing.get_origin(configs) is typing.Annotated:
        configs = typing.get_args(configs)[0]
    if typing.get_origin(configs) in (typing.Union, types.UnionType):
        members: tuple[object, ...] = typing.get_args(configs)
    else:
        members = (configs,)
    models = []
    for m in members:
        if not (isinstance(m, type) and issubclass(m, StrategyConfig)):
            raise TypeError(f"{m!r} is not a StrategyConfig model")
        models.append(m)
    return tuple(models)


def kind_of(model: type[StrategyConfig]) -> str:
    """The ``kind`` a model is selected by (its ``Literal`` default)."""
    default = model.model_fields["kind"].default
    if not isinstance(default, str):
        raise TypeError(f"{model.__name__}.kind needs a Literal default (the name YAML uses)")
    return default


class Registry(Generic[T, C]):
    """The implementations of one kind, by name. ``T`` is the interface, ``C`` what every constructor receives."""

    def __init__(self, kind: str, configs: object) -> None:
        self.kind = kind
        self.models: dict[str, type[StrategyConfig]] = {}
        # name -> "module:Class"; name -> pip extra that provides its driver (e.g. "redis" -> "redis")
        self.entries: dict[str, str] = {}
        self.extras: dict[str, str] = {}
        for model in config_models(configs):
            name = kind_of(model)
            if name in self.models:
                raise ValueError(f"{kind}: two config models for kind {name!r}")
            target = getattr(model, "implementation", None)
            if target is None:
                raise TypeError(f"{model.__name__} names no implementation (class argument implementation=)")
            if not isinstance(target, str):
                target = target[kind]
            self.models[name] = model
            self.entries[name] = target
            if model.pip_extra is not None:
                self.extras[name] = model.pip_extra

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

    def default_config(self, name: str) -> StrategyConfig:
        """The config of ``name`` with every option at its default (contract suites start from it)."""
        return self.models[name].model_validate({"kind": name})

    def create(self, config: StrategyConfig, ctx: C) -> T:
        """Build the implementation named by ``config.kind``: every strategy's constructor is ``(config, ctx)``."""
        model = self.models.get(config.kind)
        if model is not None and type(config) is not model:
            raise TypeError(
                f"{self.kind} kind {config.kind!r} takes {model.__name__}, not {type(config).__name__}"
            )
        factory = cast("Callable[[StrategyConfig, C], T]", self.load(config.kind))
        return factory(config, ctx)
