from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from strategies._registry import StrategyConfig


class ReadTimelineConfig(StrategyConfig):
    """Read fan-out: one copy per message; a device syncs each conversation."""

    implementation = "strategies.timeline.read:ReadTimeline"
    kind: Literal["read"] = "read"


class WriteTimelineConfig(StrategyConfig):
    """Write fan-out: a copy in every member's inbox; a device syncs one inbox."""

    implementation = "strategies.timeline.write:WriteTimeline"
    kind: Literal["write"] = "write"


TimelineConfig = Annotated[ReadTimelineConfig | WriteTimelineConfig, Field(discriminator="kind")]
