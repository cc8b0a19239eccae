from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class LocalBusConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["local"] = "local"


BusConfig = LocalBusConfig
