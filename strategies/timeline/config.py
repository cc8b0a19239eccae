from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class ReadTimelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["read"] = "read"


class WriteTimelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["write"] = "write"


TimelineConfig = Annotated[ReadTimelineConfig | WriteTimelineConfig, Field(discriminator="kind")]
