from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from core.sdk import WsimClient
from tests.support.server import RunningServer, running_server, test_settings

IN_CI = bool(os.environ.get("CI"))
_counter = itertools.count()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    async with running_server(test_settings(tmp_path)) as srv:
        yield srv


ClientFactory = Callable[..., Awaitable[WsimClient]]


@pytest.fixture
async def make_client(server: RunningServer) -> AsyncIterator[ClientFactory]:
    """Registered, connected SDK clients against ``server``; all closed at teardown."""
    clients: list[WsimClient] = []

    async def make(name: str | None = None, *, connect: bool = True, url: str | None = None,
                   **kwargs: Any) -> WsimClient:
        c = WsimClient(url or server.url, **kwargs)
        clients.append(c)
        username = name or f"user{next(_counter)}_{os.getpid() % 1000}"
        await c.register(username, "password-123", username.title())
        if connect:
            await c.connect()
        return c

    yield make
    for c in clients:
        await c.close()
