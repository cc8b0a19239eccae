from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from strategies._registry import StrategyConfig


class CacheOffConfig(StrategyConfig, implementation="strategies.cache.off:CacheOff"):
    """No cache: every read goes to the store (the cache experiment's baseline)."""

    kind: Literal["off"] = "off"


class L1CacheConfig(StrategyConfig, implementation="strategies.cache.l1:L1Cache"):
    """An in-process TTL/LRU cache per node; other nodes' writes are seen after ``ttl_s``."""

    kind: Literal["l1"] = "l1"
    ttl_s: Annotated[float, Field(gt=0)] = 300.0  # the plan: local cache TTL 5 minutes
    max_entries: Annotated[int, Field(gt=0)] = 100_000  # per cache name


class L2CacheConfig(StrategyConfig, implementation="strategies.cache.redis:RedisCache", pip_extra="redis"):
    """Redis, shared by every node: entries expire after `ttl_s`, a miss takes a fill lease."""

    kind: Literal["l2"] = "l2"
    url: str = "redis://127.0.0.1:6379/0"
    # Every key and channel starts with this (several deployments or test runs can share one Redis).
    prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{0,64}$")] = "wsim:"
    ttl_s: Annotated[float, Field(gt=0)] = 1800.0  # the plan: Redis cache TTL 30 minutes
    # A miss takes a lease for this long; a fill without the lease (the key was invalidated meanwhile) is dropped.
    lease_ms: Annotated[int, Field(gt=0)] = 5000
    # One read in this many is counted in the per-name popularity set that warm-up reads (0 = never).
    hot_sample: Annotated[int, Field(ge=0)] = 8
    # The popularity set keeps at most this many keys per name.
    hot_keep: Annotated[int, Field(ge=1)] = 20_000
    socket_timeout_s: Annotated[float, Field(gt=0)] = 2.0


class TwoTierCacheConfig(
    StrategyConfig, implementation="strategies.cache.tiered:TwoTierCache", pip_extra="redis"
):
    """An L1 in every process in front of the shared L2, with cross-node L1 invalidation and warm-up."""

    kind: Literal["l1+l2"] = "l1+l2"
    l1: L1CacheConfig = Field(default_factory=L1CacheConfig)
    l2: L2CacheConfig = Field(default_factory=L2CacheConfig)
    # Cache names whose most-read keys are copied from L2 into L1 on start (the hot sets).
    warm_up: list[str] = Field(default_factory=lambda: ["members", "group", "friends", "blocks", "convs"])
    warm_up_keys: Annotated[int, Field(ge=0)] = 10_000  # per name


CacheConfig = Annotated[
    CacheOffConfig | L1CacheConfig | L2CacheConfig | TwoTierCacheConfig, Field(discriminator="kind")
]
