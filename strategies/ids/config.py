from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from strategies._registry import StrategyConfig


class SnowflakeConfig(StrategyConfig, implementation="strategies.ids.snowflake:SnowflakeIds"):
    """64-bit Snowflake ids: 41 bits of milliseconds, 10 of node id, 12 of sequence."""

    kind: Literal["snowflake"] = "snowflake"
    # 0..1023. In a cluster each node must hold a distinct id (leased from the shared registry when available).
    node_id: Annotated[int, Field(ge=0, le=1023)] = 0
    epoch_ms: int = 1_704_067_200_000  # 2024-01-01T00:00:00Z


IdsConfig = SnowflakeConfig
