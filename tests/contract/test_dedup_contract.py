"""The deduplicator contract (strategies/dedup/base.py) for every registered kind; ``redis`` on a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.clock import FakeClock
from core.metrics import Metrics
from strategies import dedup
from strategies._registry import StrategyConfig
from strategies.context import StrategyContext
from strategies.dedup.base import Deduplicator, DedupRecord
from tests.support.brokers import private_redis
from tests.support.contract import contract_config, require_backend
from tests.support.services import delete_redis_keys, namespace

# A new kind gets the whole contract: a window unless listed here, shared by the nodes when its driver is a
# network one (a pip extra).
WINDOWED = set(dedup.REGISTRY.names()) - {"off"}  # kinds with a window
SHARED = set(dedup.REGISTRY.extras)  # kinds whose window one node's remember reaches on another node


def config_for(kind: str, prefix: str, url: str, window_s: float) -> StrategyConfig:
    return contract_config(dedup.REGISTRY, kind, url=url, prefix=prefix, window_s=window_s)


@dataclass(frozen=True)
class Made:
    kind: str
    clock: FakeClock
    make: Callable[..., Awaitable[Deduplicator]]


@pytest.fixture(params=dedup.REGISTRY.names())
async def made(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Made]:
    kind: str = request.param
    require_backend(dedup.REGISTRY, kind)
    prefix = namespace("wsimt") + ":"
    clock = FakeClock()
    opened: list[Deduplicator] = []

    async def make(url: str = "redis://127.0.0.1:6379/0", window_s: float = 300.0) -> Deduplicator:
        cfg = config_for(kind, prefix, url, window_s)
        d = dedup.REGISTRY.create(cfg, StrategyContext(clock, Metrics(), tmp_path, "test"))
        await d.start()
        opened.append(d)
        return d

    yield Made(kind, clock, make)
    for d in opened:
        await d.close()
    if kind in SHARED:
        await delete_redis_keys(prefix)


RECORD = DedupRecord(42, "d:1:2", 7, 1_700_000_000_000, "f" * 32)


async def test_durable_key_names_sender_device_and_cmid(made: Made) -> None:
    d = await made.make()
    key = d.durable_key(1, "dev", "c1")
    if made.kind == "off":
        assert key is None
    else:
        assert key is not None and key == d.durable_key(1, "dev", "c1")
        assert (
            len(
                {
                    key,
                    d.durable_key(2, "dev", "c1"),
                    d.durable_key(1, "dev2", "c1"),
                    d.durable_key(1, "dev", "c2"),
                }
            )
            == 4
        )


async def test_remembered_record_is_found_within_the_window(made: Made) -> None:
    d = await made.make()
    assert await d.lookup("1:dev:c1") is None
    await d.remember("1:dev:c1", RECORD)
    expected = RECORD if made.kind in WINDOWED else None
    assert await d.lookup("1:dev:c1") == expected
    assert await d.lookup("1:dev:c2") is None


async def test_records_expire_after_the_window(made: Made) -> None:
    d = await made.make(window_s=0.2)
    await d.remember("1:dev:c1", RECORD)
    made.clock.advance(1.0)  # injected-clock kinds expire now; Redis expires on its own clock
    for _ in range(300):
        if await d.lookup("1:dev:c1") is None:
            break
        await asyncio.sleep(0.01)
    assert await d.lookup("1:dev:c1") is None


@pytest.mark.parametrize("made", sorted(SHARED), indirect=True)
async def test_window_is_shared_between_nodes(made: Made) -> None:
    a, b = await made.make(), await made.make()
    await a.remember("1:dev:c9", RECORD)
    assert await b.lookup("1:dev:c9") == RECORD


@pytest.mark.parametrize("made", sorted(SHARED), indirect=True)
async def test_unreachable_redis_answers_unknown_and_never_raises(made: Made, tmp_path: Path) -> None:
    async with private_redis(tmp_path) as r:
        d = await made.make(url=r.url)
        await d.remember("1:dev:c1", RECORD)
        r.crash()
        assert await d.lookup("1:dev:c1") is None
        await d.remember("1:dev:c2", RECORD)
        # restarted empty (no persistence): the window is gone, the store's unique index remains
        await r.start()
        assert await d.lookup("1:dev:c1") is None
        await d.remember("1:dev:c3", RECORD)
        assert await d.lookup("1:dev:c3") == RECORD
