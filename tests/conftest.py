from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from core.clock import Clock
from core.sdk import WsimClient
from tests.support.server import RunningServer, running_server, settings_for_test
from tests.support.stores import nx_27017

IN_CI = bool(os.environ.get("CI"))

# Hypothesis' default 200 ms deadline per example is a timing assertion, and this machine's two cores are shared:
# a property test would fail whenever the scheduler paused it. No property here is about speed, so no deadline.
hypothesis_settings.register_profile("wsim", deadline=None, print_blob=True)
hypothesis_settings.load_profile("wsim")
_counter = itertools.count()

TESTS = Path(__file__).resolve().parent
# Every test in these directories drives Chromium, real server processes, a fault campaign on clusters or hundreds of
# generated inputs: seconds to minutes each. They are the slow lane, with the modules marked `pytestmark = slow`
# (clusters, replicas); the development lane is `python -m pytest -m "not slow"` (docs/testing.md).
SLOW_DIRS = frozenset({"e2e", "campaign", "fuzz"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the slow lane by directory, so a new browser, campaign or fuzz test is in it without a decorator."""
    for item in items:
        if TESTS in item.path.parents and item.path.relative_to(TESTS).parts[0] in SLOW_DIRS:
            item.add_marker(pytest.mark.slow)


ServerFactory = Callable[..., Awaitable[RunningServer]]
ClientFactory = Callable[..., Awaitable[WsimClient]]
UrlClientFactory = Callable[..., Awaitable[WsimClient]]


@pytest.fixture
async def start_server(tmp_path: Path) -> AsyncIterator[ServerFactory]:
    """Start real servers with settings overrides; all stopped at teardown."""
    stack = contextlib.AsyncExitStack()
    count = itertools.count()

    async def start(
        overrides: dict[str, Any] | None = None,
        data_dir: Path | None = None,
        port: int = 0,
        clock: Clock | None = None,
    ) -> RunningServer:
        """``clock=FakeClock()``: the node's timers (heartbeats, retries, sweeps, token expiry) run on fake time."""
        d = data_dir or tmp_path / f"node{next(count)}"
        settings = settings_for_test(d, overrides)
        return await stack.enter_async_context(running_server(settings, port=port, clock=clock))

    async with stack:
        yield start


@pytest.fixture
async def server(start_server: ServerFactory) -> RunningServer:
    return await start_server()


def unique_name(prefix: str = "user") -> str:
    return f"{prefix}{next(_counter)}"


@pytest.fixture
async def clients() -> AsyncIterator[list[WsimClient]]:
    made: list[WsimClient] = []
    yield made
    for c in made:
        await c.close()


@pytest.fixture
def client_on(clients: list[WsimClient]) -> UrlClientFactory:
    """Registered (and by default connected) SDK clients against any server, e.g. one ``start_server`` started
    with its own settings or clock; closed at teardown."""

    async def make(
        url: str | list[str],
        name: str | None = None,
        *,
        connect: bool = True,
        login_as: WsimClient | None = None,
        **kwargs: Any,
    ) -> WsimClient:
        c = WsimClient(url, **kwargs)
        clients.append(c)
        if login_as is not None:  # another device of an existing user
            assert login_as.user is not None
            await c.login(login_as.user["username"], "password-123")
        else:
            username = name or unique_name()
            await c.register(username, "password-123", username.title())
        if connect:
            await c.connect()
        return c

    return make


@pytest.fixture
def make_client(server: RunningServer, client_on: UrlClientFactory) -> ClientFactory:
    """``client_on`` against the default ``server`` unless ``url=`` names another."""

    async def make(
        name: str | None = None, *, url: str | list[str] | None = None, **kwargs: Any
    ) -> WsimClient:
        return await client_on(url or server.url, name, **kwargs)

    return make


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A MongoDB wire-protocol server (the nx-27017 stand-in) for this test session; each test uses its own
    database in it (tests/support/stores.py)."""
    with nx_27017(tmp_path_factory.mktemp("nx-27017")) as uri:
        yield uri
