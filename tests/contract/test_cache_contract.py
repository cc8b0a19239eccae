"""The cache contract (strategies/cache/base.py) for every registered tier, Redis tiers on a real Redis.

What every tier must do: never return a value after its delete, never let a read-through fill resurrect a value
invalidated during the load, count hits and misses per tier and name. Storing tiers return what was set (``None``
included); shared tiers (L2) show one node's writes and deletes to another."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from core.clock import FakeClock
from core.metrics import Metrics
from strategies import cache
from strategies._registry import StrategyConfig
from strategies.cache.base import MISS, Cache, cached
from strategies.context import StrategyContext
from tests.support.brokers import private_redis
from tests.support.contract import contract_config, require_backend
from tests.support.services import delete_redis_keys, namespace

# A new tier gets the whole contract: it is taken to store what is set unless listed here, and to be shared by the
# nodes when its driver is a network one (a pip extra: Redis today).
STORING = set(cache.REGISTRY.names()) - {"off"}  # tiers that keep what is set
SHARED = set(cache.REGISTRY.extras)  # tiers that one node's writes and deletes reach on another node


def config_for(kind: str, prefix: str, url: str = "redis://127.0.0.1:6379/0") -> StrategyConfig:
    """The kind's defaults with this test's Redis and key prefix; tiers that nest an L2 get it there too."""
    l2 = {"kind": "l2", "url": url, "prefix": prefix, "hot_sample": 1}
    nested: dict[str, dict[str, Any]] = {"l1+l2": {"l2": l2, "warm_up": ["members"], "warm_up_keys": 100}}
    return contract_config(
        cache.REGISTRY, kind, **{"url": url, "prefix": prefix, "hot_sample": 1, **nested.get(kind, {})}
    )


MakeCache = Callable[..., Awaitable[Cache]]


@pytest.fixture(params=cache.REGISTRY.names())
async def make_cache(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeCache]:
    kind: str = request.param
    require_backend(cache.REGISTRY, kind)
    prefix = namespace("wsimt") + ":"
    made: list[Cache] = []

    async def make(url: str = "redis://127.0.0.1:6379/0", metrics: Metrics | None = None) -> Cache:
        cfg = config_for(kind, prefix, url)
        ctx = StrategyContext(FakeClock(), metrics or Metrics(), tmp_path, "test")
        c = cache.REGISTRY.create(cfg, ctx)
        await c.start()
        made.append(c)
        return c

    make.kind = kind  # type: ignore[attr-defined]
    yield make
    for c in made:
        await c.close()
    if kind in SHARED:
        await delete_redis_keys(prefix)


def kind_of(make: MakeCache) -> str:
    return str(make.kind)  # type: ignore[attr-defined]


async def test_set_get_delete(make_cache: MakeCache) -> None:
    c = await make_cache()
    assert await c.get("members", "1") is MISS
    await c.set("members", "1", {"7": ["owner", 1]})
    await c.set("group", "1", None)
    if kind_of(make_cache) in STORING:
        assert await c.get("members", "1") == {"7": ["owner", 1]}
        assert await c.get("group", "1") is None  # None is a value, not a miss
    await c.delete("members", "1")
    assert await c.get("members", "1") is MISS


async def test_fill_after_invalidation_is_dropped(make_cache: MakeCache) -> None:
    """Reader misses and loads the old value; a writer invalidates; the reader's fill must not stick."""
    c = await make_cache()
    assert await c.get("friends", "5") is MISS
    await c.delete("friends", "5")  # the writer, while the reader was loading
    await c.set("friends", "5", [1, 2])  # the reader's late fill with the old value
    assert await c.get("friends", "5") is MISS
    # an ordinary read-through afterwards works
    calls: list[int] = []

    async def load() -> list[int]:
        calls.append(1)
        return [1, 2, 3]

    assert await cached(c, "friends", "5", load) == [1, 2, 3]
    assert await cached(c, "friends", "5", load) == [1, 2, 3]
    assert len(calls) == (1 if kind_of(make_cache) in STORING else 2)


async def test_hits_and_misses_are_counted_per_tier_and_name(make_cache: MakeCache) -> None:
    metrics = Metrics()
    c = await make_cache(metrics=metrics)
    await cached(c, "profile", "9", _const({"name": "x"}))
    await cached(c, "profile", "9", _const({"name": "x"}))
    text = metrics.render().decode()
    assert 'wsim_cache_misses_total{name="profile",tier=' in text
    if kind_of(make_cache) in STORING:
        assert 'wsim_cache_hits_total{name="profile",tier=' in text


@pytest.mark.parametrize("make_cache", sorted(SHARED), indirect=True)
async def test_shared_tiers_show_one_nodes_writes_to_another(make_cache: MakeCache) -> None:
    a, b = await make_cache(), await make_cache()
    assert await cached(b, "members", "3", _const({"1": ["owner", 1]})) == {"1": ["owner", 1]}
    assert await a.get("members", "3") == {"1": ["owner", 1]}  # from L2
    await a.delete("members", "3")
    # b's own L1 copy (l1+l2) goes away when the invalidation arrives over pub/sub
    for _ in range(500):
        if await b.get("members", "3") is MISS:
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the other node still serves the deleted value")


@pytest.mark.parametrize("make_cache", ["l1+l2"], indirect=True)
async def test_warm_up_copies_hot_keys_into_l1(make_cache: MakeCache) -> None:
    a = await make_cache()
    for g in range(5):
        await cached(a, "members", str(g), _const({"u": ["member", g]}))
        await a.get("members", str(g))
    metrics = Metrics()
    b = await make_cache(metrics=metrics)
    for g in range(5):
        assert await b.get("members", str(g)) == {"u": ["member", g]}
    text = metrics.render().decode()
    assert 'wsim_cache_hits_total{name="members",tier="l1"} 5.0' in text
    assert 'tier="l2"' not in text  # served without touching Redis


@pytest.mark.parametrize("make_cache", sorted(SHARED), indirect=True)
async def test_redis_outage_degrades_to_misses_and_keeps_invalidations(
    make_cache: MakeCache, tmp_path: Path
) -> None:
    async with private_redis(tmp_path) as r:
        c = await make_cache(url=r.url)
        await c.set("group", "1", {"name": "old"})
        r.crash()
        # L1 (l1+l2) still holds the value; L2 alone reads as a miss instead of failing the request
        expected = {"name": "old"} if kind_of(make_cache) == "l1+l2" else MISS
        assert await c.get("group", "1") == expected
        await c.delete("group", "1")  # cannot reach Redis: kept and retried, never raised
        assert await c.get("group", "1") is MISS
        await r.start()
        assert await cached(c, "group", "1", _const({"name": "new"})) == {"name": "new"}


def _const(value: Any) -> Callable[[], Awaitable[Any]]:
    async def load() -> Any:
        return value

    return load
