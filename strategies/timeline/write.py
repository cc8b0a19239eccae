from __future__ import annotations

import asyncio
from collections.abc import Sequence

from core.models import Message, MessageDraft
from strategies.timeline.base import InboxPage, TimelineContext
from strategies.timeline.config import WriteTimelineConfig

INBOX_DEVICE = "inbox"


def inbox_conv(user_id: int) -> str:
    """Inboxes live in the message store as conversations of their own, ``i:<user id>``: the store's per-
    conversation seq allocation (gap-free, durable, shared by every node) is exactly the per-user inbox seq, and
    tiering, batching and durability apply to inbox copies unchanged."""
    return f"i:{user_id}"


class WriteTimeline:
    """Write fan-out: one copy per member inbox, written (in the store's group commit, so a group's copies share
    transactions) before "sent". The copy's dedup key ``inbox:<message id>:<user>`` makes a retried fan-out a no-op.

    Weaker than read fan-out on recall: the copies keep the body; a recall reaches inboxes as the ``recall`` event
    that follows the message, so a device that syncs later downloads the recalled body and then the event that
    hides it (with read fan-out the stored body is blanked and never sent again).
    """

    def __init__(self, config: WriteTimelineConfig, ctx: TimelineContext) -> None:
        del config
        self._messages = ctx.messages
        self._ids = ctx.ids
        self._clock = ctx.clock
        self._metrics = ctx.metrics

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def on_append(self, msg: Message, members: Sequence[int]) -> None:
        now = self._clock.wall_ms()
        wire = msg.wire()
        drafts = [
            MessageDraft(
                self._ids.next_id(now),
                inbox_conv(user),
                msg.sender,
                INBOX_DEVICE,
                f"{msg.id}",
                msg.kind,
                {"m": wire},
                msg.ts_ms,
                f"inbox:{msg.id}:{user}",
            )
            for user in dict.fromkeys(members)
        ]
        with self._metrics.store_op("timeline", "fanout_write"):
            await asyncio.gather(*(self._messages.append(d) for d in drafts))

    async def inbox_after(self, user_id: int, after: int, limit: int) -> InboxPage | None:
        with self._metrics.store_op("timeline", "inbox_read"):
            copies = await self._messages.messages_after(inbox_conv(user_id), after, limit + 1)
        more = len(copies) > limit
        copies = copies[:limit]
        out = [Message.from_wire(c.body["m"]) for c in copies]
        return InboxPage(out, copies[-1].seq if copies else after, more)
