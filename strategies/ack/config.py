from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class ThreeStateAckConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["three_state"] = "three_state"


class AckOffConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["off"] = "off"


AckConfig = Annotated[ThreeStateAckConfig | AckOffConfig, Field(discriminator="kind")]
