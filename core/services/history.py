"""The read side of conversations: sync, history pages, the conversation list and search, all as one reader
may see them (from their first readable seq; replies with the quote that reader may see).

Nothing here writes. The send path (core/services/messaging.py) uses :func:`message_at` and :func:`quote_of` for
a reply's quote, so a quote reads the same whether it is pushed or paged in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.clock import Clock
from core.config import LimitsConfig, SyncConfig
from core.errors import ErrorCode, WsimError
from core.metrics import Metrics
from core.models import Message
from core.protocol.frames import ServerFrame, Sync, SyncBatch, SyncDone
from core.services.social import SocialService
from core.types import parse_conversation, parse_id
from strategies.store.base import MessageStore, StoreUnavailable
from strategies.timeline.base import Timeline

MAX_SYNC_MESSAGES = 5000  # per sync round trip, across conversations; the rest comes with "more"
QUOTE_CHARS = 80  # a reply carries this much of the quoted text (docs/protocol.md "Reply / quote")
SEARCH_QUERY_MAX = 100


def quote_of(original: Message | None, seq: int, readable: bool) -> dict[str, Any]:
    """The quoted message as one reader may see it: a short snippet, or only that it was recalled (its text is
    gone from the store) or is outside the reader's window (a later group member)."""
    if original is None or not readable:
        return {"seq": seq, "unavailable": True}
    quote: dict[str, Any] = {"seq": seq, "id": str(original.id), "from": str(original.sender)}
    if original.recalled:
        quote["recalled"] = True
        return quote
    quote["kind"] = original.kind.value
    text = original.body.get("text") or original.body.get("name") or ""
    quote["text"] = text[:QUOTE_CHARS] if isinstance(text, str) else ""
    return quote


def reply_seq(msg: Message) -> int | None:
    seq = msg.body.get("reply_to")
    return seq if isinstance(seq, int) and not msg.recalled else None


async def message_at(messages: MessageStore, conv: str, seq: int) -> Message | None:
    page = await messages.messages_after(conv, seq - 1, 1) if seq >= 1 else []
    return page[0] if page and page[0].seq == seq else None


@dataclass(eq=False)
class HistoryService:
    """Pages of messages for one reader; metered in ``history_seconds``."""

    messages: MessageStore
    timeline: Timeline
    social: SocialService
    clock: Clock
    metrics: Metrics
    limits: LimitsConfig
    sync_config: SyncConfig

    async def sync(self, user: int, frame: Sync) -> list[ServerFrame]:
        start = self.clock.monotonic()
        if frame.inbox is not None:
            page = await self.timeline.inbox_after(user, frame.inbox, frame.limit)
            if page is not None:
                inbox_frames = await self._inbox_frames(user, page.messages, page.cursor, page.more)
                self.metrics.history_seconds.observe(self.clock.monotonic() - start)
                return inbox_frames
        convs = await self.social.user_conversations(user)
        heads = await self.messages.heads(convs)
        frames: list[ServerFrame] = []
        budget = MAX_SYNC_MESSAGES
        more_any = False
        for conv in convs:
            if budget <= 0:
                more_any = True
                break
            head = heads.get(conv)
            last = head.last_seq if head else 0
            first = await self.social.first_readable_seq(user, conv)
            cursor = frame.cursors.get(conv)
            if cursor is None:
                recent = self.sync_config.recent_messages
                msgs = await self.messages.messages_before(conv, last + 1, recent) if recent and last else []
                msgs = [m for m in msgs if m.seq >= first]
                more = False
            else:
                after = max(cursor, first - 1)
                if cursor > last:
                    # Ahead of the newest message (a forged cursor, or a store restored from a backup): say
                    # where the head is, so the client can reset its cursor, rather than answering nothing.
                    frames.append(
                        SyncBatch(conv=conv, messages=[], last_seq=last, more=False, first_seq=first)
                    )
                    continue
                if after >= last:
                    continue
                limit = min(frame.limit, budget)
                msgs = await self.messages.messages_after(conv, after, limit + 1)
                more = len(msgs) > limit
                msgs = msgs[:limit]
                more_any |= more
            budget -= len(msgs)
            frames.append(
                SyncBatch(
                    conv=conv,
                    messages=await self._wire(msgs, {conv: first}),
                    last_seq=last,
                    more=more,
                    first_seq=first,
                )
            )
        frames.append(SyncDone(more=more_any))
        self.metrics.history_seconds.observe(self.clock.monotonic() - start)
        return frames

    async def _inbox_frames(
        self, user: int, msgs: list[Message], cursor: int, more: bool
    ) -> list[ServerFrame]:
        """An inbox page as the usual frames: one ``sync.batch`` per conversation (ascending seq, ``last_seq`` =
        the newest seq in this page), then ``sync.done`` with the next inbox cursor."""
        by_conv: dict[str, list[Message]] = {}
        for m in msgs:
            by_conv.setdefault(m.conv, []).append(m)
        frames: list[ServerFrame] = []
        for conv, items in by_conv.items():
            try:
                first = await self.social.first_readable_seq(user, conv)
            except WsimError:
                first = 1  # no longer a member: what the inbox holds was readable when it was written
            items.sort(key=lambda m: m.seq)
            frames.append(
                SyncBatch(
                    conv=conv,
                    messages=await self._wire(items, {conv: first}),
                    last_seq=items[-1].seq,
                    more=False,
                    first_seq=first,
                )
            )
        frames.append(SyncDone(more=more, inbox=cursor))
        return frames

    async def history(
        self,
        user: int,
        conv: str,
        *,
        before: int | None,
        after: int | None,
        limit: int,
        around: int | None = None,
    ) -> dict[str, Any]:
        start = self.clock.monotonic()
        if sum(x is not None for x in (before, after, around)) > 1:
            raise WsimError(ErrorCode.INVALID, "before, after, around: give one of them at most")
        first = await self.social.first_readable_seq(user, conv)
        limit = max(1, min(limit, self.limits.history_page_max))
        # has_older: readable messages exist below this page; has_newer: messages exist above it (issue 14,
        # gap 6: it was always false on before= pages).
        if around is not None:  # a page centred on one message (jump to a search result or a quote)
            newer_n = limit // 2
            older_n = limit - newer_n  # including ``around`` itself
            low = await self.messages.messages_before(conv, around + 1, older_n + 1)
            low = [m for m in low if m.seq >= first]
            older = len(low) > older_n
            high = await self.messages.messages_after(conv, max(around, first - 1), newer_n + 1)
            has_more = len(high) > newer_n
            msgs = low[-older_n:] + high[:newer_n]
        elif after is not None:
            msgs = await self.messages.messages_after(conv, max(after, first - 1), limit + 1)
            has_more = len(msgs) > limit
            msgs = msgs[:limit]
            older = bool(msgs) and msgs[0].seq > first
        else:
            upper = before if before is not None else 2**53
            msgs = await self.messages.messages_before(conv, upper, limit + 1)
            msgs = [m for m in msgs if m.seq >= first]
            older = len(msgs) > limit
            msgs = msgs[-limit:]
            has_more = False
            if before is not None:
                heads = await self.messages.heads([conv])
                has_more = conv in heads and heads[conv].last_seq >= before
        self.metrics.history_seconds.observe(self.clock.monotonic() - start)
        return {
            "conv": conv,
            "messages": await self._wire(msgs, {conv: first}),
            "first_seq": first,
            "has_older": older,
            "has_newer": has_more,
        }

    async def conversations(self, user: int) -> list[dict[str, Any]]:
        convs = await self.social.user_conversations(user)
        heads = await self.messages.heads(convs)
        marks = await self.messages.user_marks(user, convs)
        out: list[dict[str, Any]] = []
        remarks = {f.user_id: f.remark for f in await self.social.list_friends(user)}
        for conv in convs:
            kind, parts = parse_conversation(conv)
            head = heads.get(conv)
            first = await self.social.first_readable_seq(user, conv)
            last = head.last_seq if head else 0
            read = marks[conv].read if conv in marks else 0
            unread = max(0, last - max(read, first - 1))
            entry: dict[str, Any] = {
                "conv": conv,
                "kind": "direct" if kind == "d" else "group",
                "last_seq": last,
                "read_seq": read,
                "unread": unread,
                "first_seq": first,
                "last": head.last.wire() if head and head.last and head.last.seq >= first else None,
                "updated": head.last.ts_ms if head and head.last else 0,
            }
            if kind == "d":
                peer = parts[0] if parts[1] == user else parts[1]
                entry["peer"] = str(peer)
                entry["remark"] = remarks.get(peer, "")
            else:
                info = await self.social.group_info(parts[0])
                entry["group"] = str(parts[0])
                entry["name"] = info["name"] if info else ""
                entry["dissolved"] = bool(info and info["dissolved"])
            out.append(entry)
        out.sort(key=lambda e: e["updated"], reverse=True)
        return out

    async def search(
        self, user: int, query: str, *, conv: str | None, before: str | None, limit: int
    ) -> dict[str, Any]:
        """Full-text search over what ``user`` may read now: their conversations, each from their first readable
        seq (a group left is no longer one of them); recalled messages never match (docs/protocol.md "Search")."""
        q = query.strip()
        if not q:
            raise WsimError(ErrorCode.INVALID, "q: search for at least one visible character")
        if len(q) > SEARCH_QUERY_MAX:
            raise WsimError(ErrorCode.TOO_LONG, f"q: at most {SEARCH_QUERY_MAX} characters")
        try:
            before_id = parse_id(before) if before is not None else None
        except ValueError:
            raise WsimError(ErrorCode.INVALID, "before: not a cursor from a previous page") from None
        limit = max(1, min(limit, self.limits.history_page_max))
        windows: dict[str, int] = {}
        if conv is not None:
            windows[conv] = await self.social.first_readable_seq(user, conv)
        else:
            for c in await self.social.user_conversations(user):
                try:
                    windows[c] = await self.social.first_readable_seq(user, c)
                except WsimError:
                    continue  # left or dissolved since the list was cached
        try:
            msgs = await self.messages.search_messages(windows, q, before_id, limit + 1)
        except StoreUnavailable:
            raise WsimError(ErrorCode.UNAVAILABLE, "message store unavailable; try again") from None
        more = len(msgs) > limit
        msgs = msgs[:limit]
        return {
            "query": q,
            "messages": await self._wire(msgs, windows),
            "next": str(msgs[-1].id) if more else None,
        }

    async def _wire(self, msgs: Sequence[Message], firsts: Mapping[str, int]) -> list[dict[str, Any]]:
        """Messages as sent to one reader, replies with their quote (originals outside the page are fetched)."""
        out = [m.wire() for m in msgs]
        wanted: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for wire, m in zip(out, msgs, strict=True):
            seq = reply_seq(m)
            if seq is not None:
                wanted.setdefault((m.conv, seq), []).append(wire)
        if wanted:
            page = {(m.conv, m.seq): m for m in msgs}
            for (conv, seq), wires in wanted.items():
                original = page.get((conv, seq)) or await message_at(self.messages, conv, seq)
                quote = quote_of(original, seq, seq >= firsts.get(conv, 1))
                for wire in wires:
                    wire["quote"] = quote
        return out
