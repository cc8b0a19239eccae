from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class MemoryPresenceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["memory"] = "memory"


PresenceConfig = MemoryPresenceConfig
