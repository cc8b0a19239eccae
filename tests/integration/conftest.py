"""Fixtures for the tests that drive transport devices (experiments/transports/clients.py) against a real server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from core.sdk import WsimClient
from experiments.transports.clients import Account, Device
from tests.conftest import unique_name

AccountFactory = Callable[[str, int, str], Awaitable[list[tuple[WsimClient, Account]]]]


@pytest.fixture
def register_accounts(clients: list[WsimClient]) -> AccountFactory:
    """``await register_accounts(url, n, prefix)``: n registered users, each as its SDK client (for REST set-up,
    closed at teardown) and the Account a transport device logs in with."""

    async def make(url: str, n: int, prefix: str) -> list[tuple[WsimClient, Account]]:
        out = []
        for _ in range(n):
            c = WsimClient(url)
            clients.append(c)
            name = unique_name(prefix)
            await c.register(name, "password-123", name)
            assert c.access_token is not None
            out.append((c, Account(c.user_id, c.access_token)))
        return out

    return make


@pytest.fixture
async def devices() -> AsyncIterator[list[Device]]:
    """Transport devices a test opens; closed at teardown (before the SDK clients of ``register_accounts``)."""
    made: list[Device] = []
    yield made
    for d in made:
        await d.close()
