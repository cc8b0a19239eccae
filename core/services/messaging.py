"""The path of a message: authorize, de-duplicate, store (seq assigned), acknowledge "sent", fan out; and the
other half of the protocol: delivered/read marks, recall, sync, history and the conversation list.

Order of the send path matters and is the reliability argument (docs/protocol.md):
1. nothing is acknowledged before ``MessageStore.append`` returns (durable);
2. the dedup window remembers a message only after it is stored;
3. fan-out happens after the ack; a crash between store and fan-out loses no message: recipients get it on sync.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from core import faultpoints
from core.clock import Clock, Timer
from core.config import LimitsConfig, SyncConfig
from core.errors import ErrorCode, WsimError
from core.hub import DeviceLink
from core.metrics import Metrics
from core.models import CLIENT_KINDS, DeadLetter, Message, MessageDraft, MessageKind, Track
from core.protocol.codec import encode, message_new_json, message_sent_json, receipt_json
from core.protocol.frames import (
    MessageSend,
    ServerFrame,
    Sync,
    SyncBatch,
    SyncDone,
    TypingEvent,
)
from core.protocol.receipts import ReceiptCoalescer, ReceiptDue
from core.routing import Router
from core.services.membership import MembershipNotices, recipients_at
from core.services.social import SocialService
from core.types import parse_conversation, parse_id
from strategies.ack.base import AckPolicy, Pending
from strategies.dedup.base import Deduplicator, DedupRecord
from strategies.ids.base import IdGenerator
from strategies.store.base import MessageStore, StoreUnavailable, UserStore
from strategies.timeline.base import Timeline

log = logging.getLogger(__name__)

MAX_SYNC_MESSAGES = 5000  # per sync round trip, across conversations; the rest comes with "more"
SERVER_DEVICE = "server"
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


def fingerprint(conv: str, kind: str, body: dict[str, Any]) -> str:
    return hashlib.blake2b(
        orjson.dumps([conv, kind, body], option=orjson.OPT_SORT_KEYS), digest_size=16
    ).hexdigest()


class MessagingService:
    def __init__(
        self,
        messages: MessageStore,
        users: UserStore,
        social: SocialService,
        router: Router,
        ids: IdGenerator,
        dedup: Deduplicator,
        ack: AckPolicy,
        clock: Clock,
        metrics: Metrics,
        limits: LimitsConfig,
        sync: SyncConfig,
        timeline: Timeline,
    ) -> None:
        self.timeline = timeline
        self._messages = messages
        self._users = users
        self._social = social
        self._router = router
        self._ids = ids
        self._dedup = dedup
        self._ack = ack
        self._clock = clock
        self._metrics = metrics
        self._acks_sent = metrics.acks.labels("sent")
        self._acks_delivered = metrics.acks.labels("delivered")
        self._limits = limits
        self._sync = sync
        self._inflight: dict[str, asyncio.Future[Message]] = {}
        self._receipts = ReceiptCoalescer(limits.receipt_window_s)
        self._receipt_timer: Timer | None = None
        self._receipt_timer_at: float | None = None
        self._receipt_tasks: set[asyncio.Task[None]] = set()
        self._notices = MembershipNotices(clock)

    # ---------------------------------------------------------------- helpers
    def _queue_marks(self, conv: str, user: int, *, delivered: int = 0, read: int = 0) -> None:
        """Marks nobody waits for (own messages, delivered acks): batched by the store, no task per mark."""
        try:
            self._messages.queue_marks(conv, user, delivered=delivered, read=read)
        except StoreUnavailable as exc:
            log.warning("mark %s/%s not queued: %s", conv, user, exc)

    async def _append(self, draft: MessageDraft) -> tuple[Message, bool]:
        try:
            result = await self._messages.append(draft)
        except StoreUnavailable as exc:
            raise WsimError(
                ErrorCode.UNAVAILABLE, "message store unavailable; resend with the same cmid", detail=str(exc)
            ) from None
        if result.created:
            self._metrics.messages_stored.inc()
        return result.message, result.created

    async def _timeline_append(self, msg: Message, members: Sequence[int]) -> None:
        try:
            await self.timeline.on_append(msg, members)
        except StoreUnavailable as exc:
            raise WsimError(
                ErrorCode.UNAVAILABLE, "message store unavailable; resend with the same cmid", detail=str(exc)
            ) from None

    async def _fanout(
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
        await self._router.deliver(
            members,
            frame,
            exclude_user=exclude_user,
            exclude_device=exclude_device,
            track=Track(msg.id, msg.conv, msg.seq),
            ts_ms=msg.ts_ms,
        )

    async def _content(self, user: int, frame: MessageSend) -> tuple[MessageKind, dict[str, Any]]:
        if frame.kind == "text":
            text = frame.text
            if text is None or not text.strip():
                raise WsimError(ErrorCode.INVALID, "text: a text message needs non-empty text")
            if len(text) > self._limits.max_text_chars:
                raise WsimError(ErrorCode.TOO_LONG, f"text: at most {self._limits.max_text_chars} characters")
            if frame.file is not None:
                raise WsimError(ErrorCode.INVALID, "file: not allowed on a text message")
            return MessageKind.TEXT, {"text": text}
        if frame.file is None:
            raise WsimError(ErrorCode.INVALID, f"file: a {frame.kind} message needs an uploaded file id")
        try:
            meta = await self._users.get_file(parse_id(frame.file))
        except ValueError:
            meta = None
        if meta is None or meta.owner != user:
            raise WsimError(ErrorCode.NOT_FOUND, "file: no such upload of yours")
        if frame.kind == "image" and meta.width is None:
            raise WsimError(ErrorCode.INVALID, "file: this upload is not an image")
        body: dict[str, Any] = {"file": str(meta.id), "name": meta.name, "size": meta.size, "mime": meta.mime}
        if meta.width is not None:
            body["width"] = meta.width
            body["height"] = meta.height
        if frame.text:
            if len(frame.text) > self._limits.max_text_chars:
                raise WsimError(ErrorCode.TOO_LONG, f"text: at most {self._limits.max_text_chars} characters")
            body["text"] = frame.text
        return MessageKind(frame.kind), body

    def _push_ack(self, link: DeviceLink, msg: Message, cmid: str, duplicate: bool) -> None:
        ack = message_sent_json(cmid, msg.id, msg.conv, msg.seq, msg.ts_ms, duplicate)
        link.note_held(msg.conv, msg.seq)
        for frame in self._ack.sent_ack(ack):
            link.push(frame)
            self._acks_sent.inc()

    # ---------------------------------------------------------------- send
    async def send(self, link: DeviceLink, frame: MessageSend, received_at: float) -> None:
        user = link.user
        members = await self._social.authorize_send(user, frame.conv)
        kind, body = await self._content(user, frame)
        quote: dict[str, Any] | None = None
        if frame.reply_to is not None:
            quote = await self._reply_quote(user, frame.conv, frame.reply_to)
            body["reply_to"] = frame.reply_to
        fp = fingerprint(frame.conv, kind.value, body)
        key = self._dedup.durable_key(user, link.device, frame.cmid)
        if key is not None:
            original = await self._dedup_hit(key)
            # A window record with another fingerprint is not trusted to refuse the message: the window may key by a
            # hash (dedup memory), so the store's unique index on the full key decides (conflict or a new message).
            if isinstance(original, DedupRecord) and original.fingerprint != fp:
                original = None
            if original is not None:
                self._answer_duplicate(link, original, frame.cmid, fp)
                self._metrics.send_ack_seconds.observe(self._clock.monotonic() - received_at)
                return
        now_ms = self._clock.wall_ms()
        draft = MessageDraft(
            self._ids.next_id(now_ms), frame.conv, user, link.device, frame.cmid, kind, body, now_ms, key
        )
        future: asyncio.Future[Message] | None = None
        if key is not None:
            future = asyncio.get_running_loop().create_future()
            self._inflight[key] = future
        if faultpoints.ARMED is not None:
            faultpoints.ARMED.reached("before_store", frame.cmid)
        try:
            msg, created = await self._append(draft)
        except BaseException as exc:
            if future is not None:
                future.set_exception(exc)
                future.exception()  # waiters re-raise; do not log "never retrieved"
                self._inflight.pop(key, None)  # type: ignore[arg-type]
            raise
        if future is not None:
            future.set_result(msg)
            del self._inflight[key]  # type: ignore[arg-type]
        if not created and fingerprint(msg.conv, msg.kind.value, msg.body) != fp and not msg.recalled:
            raise WsimError(ErrorCode.CONFLICT, "this cmid was already used for a different message")
        if faultpoints.ARMED is not None:
            faultpoints.ARMED.reached("after_store", f"{msg.conv}#{msg.seq}")
        if msg.conv.startswith("g:"):  # a membership change stored before this message: its list is stale
            removed = self._notices.before(msg.conv, msg.seq)
            if removed is not None:
                current = await self._social.group_members(int(msg.conv[2:]))
                members = recipients_at(msg.seq, members, current, removed)
        # Write fan-out inboxes are part of "sent" (idempotent, so a duplicate repairs an interrupted fan-out).
        await self._timeline_append(msg, members)
        if created:
            self._queue_marks(msg.conv, user, delivered=msg.seq, read=msg.seq)
            if "file" in body:  # before the fan-out: a recipient may download the file at once
                await self._users.add_file_ref(int(body["file"]), msg.conv)
        else:
            self._metrics.dedup_hits.inc()
        # A durable duplicate means the window missed it (node restart, other node): the original's fan-out may
        # have been lost with that node, so fan out again; devices drop the duplicate by message id.
        # Fan out before remembering and acknowledging: a node killed in between leaves the sender without an
        # ack, so it resends (to another node), which meets the durable key and fans out again. Remembering first
        # would let a shared window (dedup redis) answer that resend without the fan-out ever happening.
        await self._fanout(msg, members, exclude_user=user, exclude_device=link.device, quote=quote)
        if faultpoints.ARMED is not None:
            faultpoints.ARMED.reached("after_fanout", f"{msg.conv}#{msg.seq}")
        if key is not None:
            # A message created by this send has this send's body, so its fingerprint is already known.
            stored_fp = fp if created else fingerprint(msg.conv, msg.kind.value, msg.body)
            await self._dedup.remember(key, DedupRecord(msg.id, msg.conv, msg.seq, msg.ts_ms, stored_fp))
        self._push_ack(link, msg, frame.cmid, duplicate=not created)
        if faultpoints.ARMED is not None:
            faultpoints.ARMED.reached("after_ack", f"{msg.conv}#{msg.seq}")
        self._metrics.send_ack_seconds.observe(self._clock.monotonic() - received_at)

    async def _message_at(self, conv: str, seq: int) -> Message | None:
        page = await self._messages.messages_after(conv, seq - 1, 1) if seq >= 1 else []
        return page[0] if page and page[0].seq == seq else None

    async def _reply_quote(self, user: int, conv: str, seq: int) -> dict[str, Any]:
        """Check that ``user`` may quote message ``seq`` of ``conv``; the quote every recipient of the fan-out
        may see (one frame for all: a member who joined after the original gets "unavailable")."""
        first = await self._social.first_readable_seq(user, conv)
        original = await self._message_at(conv, seq) if seq >= first else None
        if original is None or original.kind not in CLIENT_KINDS:
            raise WsimError(ErrorCode.NOT_FOUND, "reply_to: no message with this seq that you can read here")
        # A recalled original is accepted (its quote says "recalled"): a resend of a reply whose original was
        # recalled after the first copy was stored must still get its ack, not an error.
        readable = True
        if conv.startswith("g:"):
            windows = await self._social.group_members(int(conv[2:]))
            readable = all(int(v[1]) <= seq for v in windows.values())
        return quote_of(original, seq, readable)

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
                original = page.get((conv, seq)) or await self._message_at(conv, seq)
                quote = quote_of(original, seq, seq >= firsts.get(conv, 1))
                for wire in wires:
                    wire["quote"] = quote
        return out

    async def _dedup_hit(self, key: str) -> Message | DedupRecord | None:
        pending = self._inflight.get(key)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except WsimError:
                return None  # the first copy failed; this one tries again
        return await self._dedup.lookup(key)

    def _answer_duplicate(
        self, link: DeviceLink, original: Message | DedupRecord, cmid: str, fp: str
    ) -> None:
        if isinstance(original, Message):
            stored_fp = fingerprint(original.conv, original.kind.value, original.body)
            msg_id, conv, seq, ts = original.id, original.conv, original.seq, original.ts_ms
        else:
            stored_fp = original.fingerprint
            msg_id, conv, seq, ts = original.msg_id, original.conv, original.seq, original.ts_ms
        if stored_fp != fp:
            raise WsimError(ErrorCode.CONFLICT, "this cmid was already used for a different message")
        self._metrics.dedup_hits.inc()
        link.note_held(conv, seq)
        for f in self._ack.sent_ack(message_sent_json(cmid, msg_id, conv, seq, ts, True)):
            link.push(f)
            self._acks_sent.inc()

    async def post_system(
        self, conv: str, actor: int, body: dict[str, Any], extra_recipients: Sequence[int] = ()
    ) -> Message:
        """Append a server-authored message (group events) and push it to every member's devices."""
        now_ms = self._clock.wall_ms()
        msg_id = self._ids.next_id(now_ms)
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
        msg, _ = await self._append(draft)
        self._notices.record(conv, msg.seq, body)
        # The actor caused this notice: it is not unread for them (as their own messages are not).
        self._queue_marks(conv, actor, delivered=msg.seq, read=msg.seq)
        members = await self._social.conversation_members(conv)
        recipients = list(dict.fromkeys([*members, *extra_recipients]))
        await self._timeline_append(msg, recipients)
        await self._fanout(msg, recipients)
        return msg

    # ---------------------------------------------------------------- recall
    async def recall(self, link: DeviceLink, msg_id: str) -> None:
        user = link.user
        try:
            msg = await self._messages.get_message(parse_id(msg_id))
        except ValueError:
            msg = None
        if msg is None:
            raise WsimError(ErrorCode.NOT_FOUND, "no such message")
        first = await self._social.first_readable_seq(user, msg.conv)
        if msg.seq < first:
            raise WsimError(ErrorCode.NOT_FOUND, "no such message")
        if msg.sender != user or msg.kind not in CLIENT_KINDS:
            raise WsimError(ErrorCode.FORBIDDEN, "you can only recall your own messages")
        if msg.recalled:
            return
        age_s = (self._clock.wall_ms() - msg.ts_ms) / 1000
        if age_s > self._limits.recall_window_s:
            raise WsimError(
                ErrorCode.RECALL_WINDOW,
                f"messages can be recalled within {self._limits.recall_window_s:g} s of sending",
            )
        try:
            await self._messages.mark_recalled(msg.id)
        except StoreUnavailable:
            raise WsimError(ErrorCode.UNAVAILABLE, "message store unavailable; try again") from None
        now_ms = self._clock.wall_ms()
        event_id = self._ids.next_id(now_ms)
        # The recall is itself a message in the conversation, so offline devices learn it in order on sync.
        draft = MessageDraft(
            event_id,
            msg.conv,
            user,
            link.device,
            f"recall-{msg.id}",
            MessageKind.RECALL,
            {"id": str(msg.id), "seq": msg.seq},
            now_ms,
            f"recall:{msg.id}",
        )
        event, _ = await self._append(draft)
        members = await self._social.conversation_members(msg.conv)
        await self._timeline_append(event, members)
        await self._fanout(event, members)

    # ---------------------------------------------------------------- marks
    async def _clamp_to_head(self, link: DeviceLink, conv: str, seq: int) -> int:
        """A mark never passes the newest message (issue 14, M2: a forged ack of 10^9 was stored and shown).
        A device acks what it was given, so a seq at or below what it holds needs no store read."""
        if seq <= link.held.get(conv, 0):
            return seq
        heads = await self._messages.heads([conv])
        return min(seq, heads[conv].last_seq if conv in heads else 0)

    async def mark_delivered(self, link: DeviceLink, conv: str, seq: int) -> None:
        """Cumulative: the device holds ``conv`` up to ``seq``."""
        user = link.user
        await self._social.first_readable_seq(user, conv)
        seq = await self._clamp_to_head(link, conv, seq)
        if seq <= 0:
            return
        link.note_held(conv, seq)
        self._acks_delivered.inc()
        self._queue_marks(conv, user, delivered=seq)
        # Groups get read counts, not per-member delivered receipts (200x the traffic).
        if conv.startswith("d:"):
            await self._offer_receipt(conv, user, delivered=seq)

    async def mark_read(self, link: DeviceLink, conv: str, seq: int) -> None:
        user = link.user
        await self._social.first_readable_seq(user, conv)
        heads = await self._messages.heads([conv])
        last = heads[conv].last_seq if conv in heads else 0
        seq = min(seq, last)
        if seq <= 0:
            return
        try:
            await self._messages.set_marks(conv, user, delivered=seq, read=seq)
        except StoreUnavailable:
            raise WsimError(ErrorCode.UNAVAILABLE, "message store unavailable; try again") from None
        link.note_held(conv, seq)
        self._metrics.acks.labels("read").inc()
        await self._offer_receipt(conv, user, read=seq, device=link.device)

    # ---------------------------------------------------------------- receipts (coalesced)
    async def _offer_receipt(
        self, conv: str, user: int, *, delivered: int = 0, read: int = 0, device: str | None = None
    ) -> None:
        now = self._clock.monotonic()
        for due in self._receipts.offer(conv, user, now, delivered=delivered, read=read, device=device):
            await self._send_receipt(due)
        self._arm_receipt_flush(self._receipts.next_due())

    async def _send_receipt(self, due: ReceiptDue) -> None:
        frame = receipt_json(due.conv, due.user, delivered=due.delivered, read=due.read)
        if due.read is None:  # delivered only: the peer of a direct chat
            _, parts = parse_conversation(due.conv)
            targets = [parts[0] if parts[1] == due.user else parts[1]]
            for r in self._ack.receipts(frame):
                await self._router.deliver(targets, r)
            return
        members = await self._social.conversation_members(due.conv)
        for r in self._ack.receipts(frame):
            await self._router.deliver(members, r, exclude_user=due.user, exclude_device=due.device)

    def _arm_receipt_flush(self, due: float | None) -> None:
        """The one place that schedules the coalesced-receipt flush, on the node's clock (fake time in tests)."""
        if due is None or (self._receipt_timer_at is not None and self._receipt_timer_at <= due):
            return
        if self._receipt_timer is not None:
            self._receipt_timer.cancel()
        self._receipt_timer_at = due
        self._receipt_timer = self._clock.call_at(due, self._on_receipt_timer)

    def _on_receipt_timer(self) -> None:
        self._receipt_timer = self._receipt_timer_at = None
        dues, next_due = self._receipts.flush(self._clock.monotonic())
        if dues:
            task = asyncio.ensure_future(self._send_receipts(dues))
            self._receipt_tasks.add(task)
            task.add_done_callback(self._receipt_tasks.discard)
        self._arm_receipt_flush(next_due)

    async def _send_receipts(self, dues: list[ReceiptDue]) -> None:
        for due in dues:
            try:
                await self._send_receipt(due)
            except Exception:  # a receipt is advisory: the marks are stored and listed by /receipts
                log.exception("receipt for %s/%s not sent", due.conv, due.user)

    async def close(self) -> None:
        """Stop the receipt timer; receipts still waiting are dropped (their marks are stored)."""
        if self._receipt_timer is not None:
            self._receipt_timer.cancel()
            self._receipt_timer = self._receipt_timer_at = None
        for task in list(self._receipt_tasks):
            task.cancel()

    async def typing(self, link: DeviceLink, conv: str) -> None:
        members = await self._social.authorize_send(link.user, conv)
        others = [m for m in members if m != link.user]
        await self._router.deliver(others, encode(TypingEvent(conv=conv, user=str(link.user))))

    async def dead_letter(self, link: DeviceLink, pending: Pending) -> None:
        self._metrics.dead_letters.inc()
        now_ms = self._clock.wall_ms()
        letter = DeadLetter(
            self._ids.next_id(now_ms),
            pending.msg_id,
            pending.conv,
            pending.seq,
            link.user,
            link.device,
            pending.attempt + 1,
            "no delivery ack after the last retry",
            now_ms,
        )
        try:
            await self._messages.add_dead_letter(letter)
        except StoreUnavailable:
            log.warning(
                "dead letter for message %s to %s/%s not recorded: store unavailable",
                pending.msg_id,
                link.user,
                link.device,
            )

    # ---------------------------------------------------------------- sync and history
    async def sync(self, user: int, frame: Sync) -> list[ServerFrame]:
        start = self._clock.monotonic()
        if frame.inbox is not None:
            page = await self.timeline.inbox_after(user, frame.inbox, frame.limit)
            if page is not None:
                inbox_frames = await self._inbox_frames(user, page.messages, page.cursor, page.more)
                self._metrics.history_seconds.observe(self._clock.monotonic() - start)
                return inbox_frames
        convs = await self._social.user_conversations(user)
        heads = await self._messages.heads(convs)
        frames: list[ServerFrame] = []
        budget = MAX_SYNC_MESSAGES
        more_any = False
        for conv in convs:
            if budget <= 0:
                more_any = True
                break
            head = heads.get(conv)
            last = head.last_seq if head else 0
            first = await self._social.first_readable_seq(user, conv)
            cursor = frame.cursors.get(conv)
            if cursor is None:
                recent = self._sync.recent_messages
                msgs = await self._messages.messages_before(conv, last + 1, recent) if recent and last else []
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
                msgs = await self._messages.messages_after(conv, after, limit + 1)
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
        self._metrics.history_seconds.observe(self._clock.monotonic() - start)
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
                first = await self._social.first_readable_seq(user, conv)
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
        start = self._clock.monotonic()
        if sum(x is not None for x in (before, after, around)) > 1:
            raise WsimError(ErrorCode.INVALID, "before, after, around: give one of them at most")
        first = await self._social.first_readable_seq(user, conv)
        limit = max(1, min(limit, self._limits.history_page_max))
        # has_older: readable messages exist below this page; has_newer: messages exist above it (issue 14,
        # gap 6: it was always false on before= pages).
        if around is not None:  # a page centred on one message (jump to a search result or a quote)
            newer_n = limit // 2
            older_n = limit - newer_n  # including ``around`` itself
            low = await self._messages.messages_before(conv, around + 1, older_n + 1)
            low = [m for m in low if m.seq >= first]
            older = len(low) > older_n
            high = await self._messages.messages_after(conv, max(around, first - 1), newer_n + 1)
            has_more = len(high) > newer_n
            msgs = low[-older_n:] + high[:newer_n]
        elif after is not None:
            msgs = await self._messages.messages_after(conv, max(after, first - 1), limit + 1)
            has_more = len(msgs) > limit
            msgs = msgs[:limit]
            older = bool(msgs) and msgs[0].seq > first
        else:
            upper = before if before is not None else 2**53
            msgs = await self._messages.messages_before(conv, upper, limit + 1)
            msgs = [m for m in msgs if m.seq >= first]
            older = len(msgs) > limit
            msgs = msgs[-limit:]
            has_more = False
            if before is not None:
                heads = await self._messages.heads([conv])
                has_more = conv in heads and heads[conv].last_seq >= before
        self._metrics.history_seconds.observe(self._clock.monotonic() - start)
        return {
            "conv": conv,
            "messages": await self._wire(msgs, {conv: first}),
            "first_seq": first,
            "has_older": older,
            "has_newer": has_more,
        }

    async def conversations(self, user: int) -> list[dict[str, Any]]:
        convs = await self._social.user_conversations(user)
        heads = await self._messages.heads(convs)
        marks = await self._messages.user_marks(user, convs)
        out: list[dict[str, Any]] = []
        remarks = {f.user_id: f.remark for f in await self._social.list_friends(user)}
        for conv in convs:
            kind, parts = parse_conversation(conv)
            head = heads.get(conv)
            first = await self._social.first_readable_seq(user, conv)
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
                info = await self._social.group_info(parts[0])
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
        limit = max(1, min(limit, self._limits.history_page_max))
        windows: dict[str, int] = {}
        if conv is not None:
            windows[conv] = await self._social.first_readable_seq(user, conv)
        else:
            for c in await self._social.user_conversations(user):
                try:
                    windows[c] = await self._social.first_readable_seq(user, c)
                except WsimError:
                    continue  # left or dissolved since the list was cached
        try:
            msgs = await self._messages.search_messages(windows, q, before_id, limit + 1)
        except StoreUnavailable:
            raise WsimError(ErrorCode.UNAVAILABLE, "message store unavailable; try again") from None
        more = len(msgs) > limit
        msgs = msgs[:limit]
        return {
            "query": q,
            "messages": await self._wire(msgs, windows),
            "next": str(msgs[-1].id) if more else None,
        }

    async def receipts(self, user: int, conv: str) -> dict[str, Any]:
        """Every member's marks in ``conv`` (group read counts are computed from these by clients)."""
        await self._social.first_readable_seq(user, conv)
        marks = await self._messages.get_marks(conv)
        return {
            "conv": conv,
            "marks": {str(u): {"delivered": m.delivered, "read": m.read} for u, m in marks.items()},
        }
