from __future__ import annotations

from collections.abc import Sequence

from core.models import Message
from strategies.timeline.base import InboxPage, TimelineContext
from strategies.timeline.config import ReadTimelineConfig


class ReadTimeline:
    """Read fan-out: no inbox; the conversation's own copy is the timeline (what the server did before)."""

    def __init__(self, config: ReadTimelineConfig, ctx: TimelineContext) -> None:
        del config, ctx

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def on_append(self, msg: Message, members: Sequence[int]) -> None:
        return None

    async def inbox_after(self, user_id: int, after: int, limit: int) -> InboxPage | None:
        return None
