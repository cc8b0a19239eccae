"""Configs for contract suites, derived from the registry so a newly registered kind is tested without edits.

A suite passes the options it wants to vary (a window, a key prefix, a server URL); each kind gets them where
its config model has such a field and keeps its defaults otherwise. Kinds that need a harness of their own (a
server to start and break) are listed by the suite, which fails naming the kind it has no harness for.
"""

from __future__ import annotations

from typing import Any

from strategies._registry import Registry, StrategyConfig
from tests.support.services import require_service


def contract_config(registry: Registry[Any, Any], kind: str, **options: Any) -> StrategyConfig:
    model = registry.models[kind]
    known = {k: v for k, v in options.items() if k in model.model_fields}
    return model.model_validate({**known, "kind": kind})


# pip extra of a kind's driver -> the service (tests/support/services.py) its contract tests need
EXTRA_SERVICES = {"redis": "redis", "rabbitmq": "rabbitmq", "mqtt": "mosquitto", "mysql": "mariadb"}


def require_backend(registry: Registry[Any, Any], kind: str) -> None:
    """Fail in CI (skip elsewhere) when the kind's server is down, before a test waits on it."""
    service = EXTRA_SERVICES.get(registry.extras.get(kind, ""))
    if service is not None:
        require_service(service)
