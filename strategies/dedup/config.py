from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from strategies._registry import StrategyConfig


class DedupOffConfig(StrategyConfig, implementation="strategies.dedup.off:DedupOff"):
    """No deduplication: a resent message is stored and delivered again (the dedup experiment's control)."""

    kind: Literal["off"] = "off"


class MemoryDedupConfig(StrategyConfig, implementation="strategies.dedup.memory:MemoryDeduplicator"):
    """A window of recent client message ids in this process (a ring; per node)."""

    kind: Literal["memory"] = "memory"
    window_s: Annotated[float, Field(gt=0)] = 300.0
    max_entries: Annotated[int, Field(gt=0)] = 1_000_000


class RedisDedupConfig(
    StrategyConfig, implementation="strategies.dedup.redis:RedisDeduplicator", pip_extra="redis"
):
    """The window in Redis, shared by every node (``SET NX`` with a TTL of ``window_s``)."""

    kind: Literal["redis"] = "redis"
    url: str = "redis://127.0.0.1:6379/0"
    prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{0,64}$")] = "wsim:"
    window_s: Annotated[float, Field(gt=0)] = 300.0  # the plan: dedup window 5 minutes
    socket_timeout_s: Annotated[float, Field(gt=0)] = 2.0


DedupConfig = Annotated[DedupOffConfig | MemoryDedupConfig | RedisDedupConfig, Field(discriminator="kind")]
