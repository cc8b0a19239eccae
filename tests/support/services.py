"""How tests reach real services (MariaDB, Redis, RabbitMQ, Mosquitto, MongoDB stand-in).

A test that needs a service calls :func:`require_service`. In CI (``CI`` set) an unreachable service fails the
test: CI must provide it (``.ci/run`` starts whatever is down). Outside CI the test is skipped with the reason.
Each test run uses its own namespace (database name, key prefix, exchange/topic prefix) so parallel runs and
sessions sharing one service never see each other's data.
"""

from __future__ import annotations

import os
import secrets
import socket
from typing import NoReturn

import pytest

IN_CI = bool(os.environ.get("CI"))

SERVICES = {
    "mariadb": ("127.0.0.1", 3306),
    "redis": ("127.0.0.1", 6379),
    "rabbitmq": ("127.0.0.1", 5672),
    "mosquitto": ("127.0.0.1", 1883),
}


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def unavailable(message: str, *, module: bool = False) -> NoReturn:
    """Something a test needs is absent: in CI (which must provide it) the test fails; elsewhere it is skipped."""
    if IN_CI:
        pytest.fail(f"{message}; CI must provide it (.ci/run installs or starts it)", pytrace=False)
    pytest.skip(f"{message} (skipped outside CI only)", allow_module_level=module)


def require_service(name: str, host: str | None = None, port: int | None = None) -> tuple[str, int]:
    default_host, default_port = SERVICES.get(name, ("127.0.0.1", 0))
    host = host or default_host
    port = port or default_port
    if not reachable(host, port):
        unavailable(f"{name} is not reachable at {host}:{port}")
    return host, port


def namespace(prefix: str = "wsimt") -> str:
    """A fresh name for this test's database / key prefix / exchange."""
    return f"{prefix}_{secrets.token_hex(4)}"


async def delete_redis_keys(prefix: str, url: str = "redis://127.0.0.1:6379/0") -> None:
    """Drop a test's key namespace from the shared Redis, which outlives the test run."""
    import redis.asyncio as aioredis  # an optional extra: imported only by tests that reached Redis

    r = aioredis.Redis.from_url(url)
    try:
        keys = [k async for k in r.scan_iter(match=f"{prefix}*")]
        if keys:
            await r.delete(*keys)
    finally:
        await r.aclose()
