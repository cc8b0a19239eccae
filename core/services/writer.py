"""The steps every message takes once it is allowed: append (the store assigns ``seq``), inbox copies, fan-out.

Chat messages (core/services/messaging.py), recalls and the server's own system notices all take them, so they
live here, below both the send path and the social service: social posts group events through
:class:`MessageWriter` without knowing the send path, and the send path asks social who may read, so neither
needs the other at construction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from core.clock import Clock
from core.errors import ErrorCode, WsimError
from core.metrics import Metrics
from core.models import Message, MessageDraft, MessageKind, Track
from core.protocol.codec import message_new_json
from core.routing import Router
from core.services.membership import MembershipNotices
from strategies.ids.base import IdGenerator
from strategies.store.base import MessageStore, StoreUnavailable
from strategies.timeline.base import Timeline

log = logging.getLogger(__name__)

SERVER_DEVICE = "server"


class SystemPoster(Protocol):
    """What the social service needs to announce a group or friendship event in its conversation."""

    async def post_system(
        self, conv: str, actor: int, body: dict[str, Any], recipients: Sequence[int]
    ) -> Message: ...


def queue_marks(messages: MessageStore, conv: str, user: int, *, delivered: int = 0, read: int = 0) -> None:
    """Marks nobody waits for (own messages, delivered acks): batched by the store, no task per mark."""
    try:
        messages.queue_marks(conv, user, delivered=delivered, read=read)
    except StoreUnavailable as exc:
        log.warning("mark %s/%s not queued: %s", conv, user, exc)


@dataclass(eq=False)
class MessageWriter:
    """Append, inbox and fan-out for one node; also the :class:`SystemPoster` the social service is built with.

    ``notices`` remembers the membership notices this node stored, so a send that read the member list before a
    notice and got a later seq fans out to the members as of its seq (core/services/membership.py)."""

    messages: MessageStore
    timeline: Timeline
    router: Router
    ids: IdGenerator
    clock: Clock
    metrics: Metrics

    def __post_init__(self) -> None:
        self.notices = MembershipNotices(self.clock)

    async def append(self, draft: MessageDraft) -> tuple[Message, bool]:
        """Durably store ``draft``; the message and whether this call created it (False: the durable key existed)."""
        try:
            result = await self.messages.append(draft)
        except StoreUnavailable as exc:
            raise WsimError(
                ErrorCode.UNAVAILABLE, "message store unavailable; resend with the same cmid", detail=str(exc)
            ) from None
        if result.created:
            self.metrics.messages_stored.inc()
        return result.message, result.created

    async def inbox(self, msg: Message, members: Sequence[int]) -> None:
        """Write fan-out inbox copies: part of "sent" (idempotent, so a duplicate repairs an interrupted one)."""
        try:
            await self.timeline.on_append(msg, members)
        except StoreUnavailable as exc:
            raise WsimError(
                ErrorCode.UNAVAILABLE, "message store unavailable; resend with the same cmid", detail=str(exc)
            ) from None

    async def fanout(
        self,
        msg: Message,
        members: Sequence[int],
        exclude_user: int | None = None,
        exclude_device: str | None = None,
        quote: dict[str, Any] | None = None,
    ) -> None:
        wire = msg.wire()
        if quote is not None:
            wire["quote"] = quote
        frame = message_new_json(wire)
        await self.router.deliver(
            members,
            frame,
            exclude_user=exclude_user,
            exclude_device=exclude_device,
            track=Track(msg.id, msg.conv, msg.seq),
            ts_ms=msg.ts_ms,
        )

    async def post_system(
        self, conv: str, actor: int, body: dict[str, Any], recipients: Sequence[int]
    ) -> Message:
        """Append a server-authored message (group events) and push it to ``recipients`` (the members as the
        caller, who changed them, knows them)."""
        now_ms = self.clock.wall_ms()
        msg_id = self.ids.next_id(now_ms)
        draft = MessageDraft(
            msg_id,
            conv,
            actor,
            SERVER_DEVICE,
            f"sys-{msg_id}",
            MessageKind.SYSTEM,
            {**body, "actor": str(actor)},
            now_ms,
            None,
        )
        msg, _ = await self.append(draft)
        self.notices.record(conv, msg.seq, body)
        # The actor caused this notice: it is not unread for them (as their own messages are not).
        queue_marks(self.messages, conv, actor, delivered=msg.seq, read=msg.seq)
        await self.inbox(msg, recipients)
        await self.fanout(msg, recipients)
        return msg
