from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class DedupOffConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["off"] = "off"


class MemoryDedupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["memory"] = "memory"
    window_s: Annotated[float, Field(gt=0)] = 300.0
    max_entries: Annotated[int, Field(gt=0)] = 1_000_000


DedupConfig = Annotated[DedupOffConfig | MemoryDedupConfig, Field(discriminator="kind")]
