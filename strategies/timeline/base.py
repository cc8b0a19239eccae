"""Timeline model: how a device finds what it missed.

* ``read`` fan-out (the default): one copy of each message, in its conversation; a device pulls each
  conversation after its per-conversation cursor (``sync {cursors}``). Sending costs one write whatever the group
  size; syncing costs one query per conversation with news (plus the heads of all the user's conversations).
* ``write`` fan-out: additionally, a copy of each message goes to the inbox of every member, numbered by a per-user
  inbox seq; a device pulls its inbox after one cursor (``sync {inbox}``). Sending costs one write per member;
  syncing costs one query whatever the number of conversations.

Guarantees of ``on_append``: it returns after the inbox copies are durable (the messaging service acknowledges
"sent" after it), and it is idempotent (a retried fan-out of the same message writes no second copy), so an inbox
never misses a message that was acknowledged and never holds one twice. Inbox seqs are gap-free per user (they are
allocated by the message store like conversation seqs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Protocol

from core.models import Message
from strategies.context import StrategyContext

if TYPE_CHECKING:
    from strategies.ids.base import IdGenerator
    from strategies.store.base import MessageStore


@dataclass(frozen=True)
class TimelineContext(StrategyContext):
    """A timeline writes inbox copies through the node's message store and numbers them with its id generator, so
    it is built after both, with them in its context."""

    messages: MessageStore
    ids: IdGenerator

    @classmethod
    def of(cls, ctx: StrategyContext, messages: MessageStore, ids: IdGenerator) -> TimelineContext:
        shared = {f.name: getattr(ctx, f.name) for f in fields(StrategyContext)}
        return cls(**shared, messages=messages, ids=ids)


@dataclass(frozen=True, slots=True)
class InboxPage:
    messages: list[Message]  # the original messages (their own conv and seq), in inbox order
    cursor: int  # the inbox seq to send next time
    more: bool


class Timeline(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def on_append(self, msg: Message, members: Sequence[int]) -> None:
        """Called for every stored message before "sent" is acknowledged."""
        ...

    async def inbox_after(self, user_id: int, after: int, limit: int) -> InboxPage | None:
        """The user's inbox after ``after``; ``None`` when this model keeps no inbox (the device syncs by
        conversation cursors instead)."""
        ...
