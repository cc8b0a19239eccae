from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from strategies._registry import StrategyConfig


class MemoryPresenceConfig(StrategyConfig, implementation="strategies.presence.memory:MemoryPresence"):
    """Who is online, in this process (single node)."""

    kind: Literal["memory"] = "memory"


class RedisPresenceConfig(
    StrategyConfig, implementation="strategies.presence.redis:RedisPresence", pip_extra="redis"
):
    """Shared registry in Redis: per-user device hashes, per-node leases (see strategies/presence/redis.py)."""

    kind: Literal["redis"] = "redis"
    url: str = "redis://127.0.0.1:6379/0"
    # Every key starts with this (one cluster per prefix on a Redis server).
    prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = "wsim"
    # A node that stops renewing (dead, partitioned, stalled) loses its devices after this long plus renew_s.
    node_lease_s: Annotated[float, Field(gt=0)] = 10.0
    # How often a node renews its leases and sweeps the expired leases of other nodes.
    renew_s: Annotated[float, Field(gt=0)] = 3.0
    # Snowflake node id lease (SET NX with this TTL, renewed every renew_s).
    node_id_lease_s: Annotated[float, Field(gt=0)] = 30.0
    # A sweeper that claimed a dead node's lease and died may be replaced after this long.
    reap_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    # Commands per pipeline when re-asserting or reaping many devices.
    batch: Annotated[int, Field(ge=1, le=100_000)] = 1000
    timeout_s: Annotated[float, Field(gt=0)] = 5.0
    # start() fails when Redis cannot be reached for this long.
    start_timeout_s: Annotated[float, Field(gt=0)] = 30.0

    @model_validator(mode="after")
    def _renew_well_inside_the_leases(self) -> Self:
        if self.renew_s * 2 > self.node_lease_s or self.renew_s * 2 > self.node_id_lease_s:
            raise ValueError("renew_s must be at most half of node_lease_s and of node_id_lease_s")
        return self


PresenceConfig = Annotated[MemoryPresenceConfig | RedisPresenceConfig, Field(discriminator="kind")]
