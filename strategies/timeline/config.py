from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from strategies._registry import StrategyConfig


class ReadTimelineConfig(StrategyConfig, implementation="strategies.timeline.read:ReadTimeline"):
    """Read fan-out: one copy per message; a device syncs each conversation."""

    kind: Literal["read"] = "read"


class WriteTimelineConfig(StrategyConfig, implementation="strategies.timeline.write:WriteTimeline"):
    """Write fan-out: a copy in every member's inbox; a device syncs one inbox."""

    kind: Literal["write"] = "write"


TimelineConfig = Annotated[ReadTimelineConfig | WriteTimelineConfig, Field(discriminator="kind")]
