from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class CacheOffConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["off"] = "off"


class L1CacheConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["l1"] = "l1"
    ttl_s: Annotated[float, Field(gt=0)] = 300.0  # the plan: local cache TTL 5 minutes
    max_entries: Annotated[int, Field(gt=0)] = 100_000  # per cache name


CacheConfig = Annotated[CacheOffConfig | L1CacheConfig, Field(discriminator="kind")]
