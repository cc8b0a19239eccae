"""The send path: authorize, de-duplicate, store (seq assigned), acknowledge "sent", fan out; recalls, and the
dead letters of messages a device never acknowledged. Reads are core/services/history.py, marks, receipts and
typing core/services/receipts.py; the append/inbox/fan-out steps shared with system notices core/services/writer.py.

Order of the send path matters and is the reliability argument (docs/protocol.md):
1. nothing is acknowledged before ``MessageStore.append`` returns (durable);
2. the dedup window remembers a message only after it is stored;
3. fan-out happens after the ack; a crash between store and fan-out loses no message: recipients get it on sync.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import orjson

from core.clock import Clock
from core.config import LimitsConfig
from core.errors import ErrorCode, WsimError
from core.faultpoints import FaultPoints
from core.hub import DeviceLink
from core.metrics import Metrics
from core.models import CLIENT_KINDS, DeadLetter, Message, MessageDraft, MessageKind
from core.protocol.codec import message_sent_json
from core.protocol.frames import MessageSend
from core.services.history import message_at, quote_of
from core.services.membership import recipients_at
from core.services.social import SocialService
from core.services.writer import MessageWriter, queue_marks
from core.types import parse_id
from strategies.ack.base import AckPolicy, Pending
from strategies.dedup.base import Deduplicator, DedupRecord
from strategies.ids.base import IdGenerator
from strategies.store.base import MessageStore, StoreUnavailable, UserStore

log = logging.getLogger(__name__)


def fingerprint(conv: str, kind: str, body: dict[str, Any]) -> str:
    return hashlib.blake2b(
        orjson.dumps([conv, kind, body], option=orjson.OPT_SORT_KEYS), digest_size=16
    ).hexdigest()


@dataclass(eq=False)
class MessagingService:
    """The send path of one node; concurrent sends of one durable key on this node share one append."""

    writer: MessageWriter
    messages: MessageStore
    users: UserStore
    social: SocialService
    ids: IdGenerator
    dedup: Deduplicator
    ack: AckPolicy
    clock: Clock
    metrics: Metrics
    limits: LimitsConfig
    faults: FaultPoints

    def __post_init__(self) -> None:
        self._acks_sent = self.metrics.acks.labels("sent")
        self._inflight: dict[str, asyncio.Future[Message]] = {}
        self._notices = self.writer.notices

    async def _content(self, user: int, frame: MessageSend) -> tuple[MessageKind, dict[str, Any]]:
        if frame.kind == "text":
            text = frame.text
            if text is None or not text.strip():
                raise WsimError(ErrorCode.INVALID, "text: a text message needs non-empty text")
            if len(text) > self.limits.max_text_chars:
                raise WsimError(ErrorCode.TOO_LONG, f"text: at most {self.limits.max_text_chars} characters")
            if frame.file is not None:
                raise WsimError(ErrorCode.INVALID, "file: not allowed on a text message")
            return MessageKind.TEXT, {"text": text}
        if frame.file is None:
            raise WsimError(ErrorCode.INVALID, f"file: a {frame.kind} message needs an uploaded file id")
        try:
            meta = await self.users.get_file(parse_id(frame.file))
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
            if len(frame.text) > self.limits.max_text_chars:
                raise WsimError(ErrorCode.TOO_LONG, f"text: at most {self.limits.max_text_chars} characters")
            body["text"] = frame.text
        return MessageKind(frame.kind), body

    def _push_ack(
        self, link: DeviceLink, cmid: str, msg_id: int, conv: str, seq: int, ts_ms: int, duplicate: bool
    ) -> None:
        link.note_held(conv, seq)
        for frame in self.ack.sent_ack(message_sent_json(cmid, msg_id, conv, seq, ts_ms, duplicate)):
            link.push(frame)
            self._acks_sent.inc()

    # ---------------------------------------------------------------- send
    async def send(self, link: DeviceLink, frame: MessageSend, received_at: float) -> None:
        user = link.user
        members = await self.social.authorize_send(user, frame.conv)
        kind, body = await self._content(user, frame)
        quote: dict[str, Any] | None = None
        if frame.reply_to is not None:
            quote = await self._reply_quote(user, frame.conv, frame.reply_to)
            body["reply_to"] = frame.reply_to
        fp = fingerprint(frame.conv, kind.value, body)
        key = self.dedup.durable_key(user, link.device, frame.cmid)
        if key is not None:
            original = await self._dedup_hit(key)
            # A window record with another fingerprint is not trusted to refuse the message: the window may key by a
            # hash (dedup memory), so the store's unique index on the full key decides (conflict or a new message).
            if isinstance(original, DedupRecord) and original.fingerprint != fp:
                original = None
            if original is not None:
                self._answer_duplicate(link, original, frame.cmid, fp)
                self.metrics.send_ack_seconds.observe(self.clock.monotonic() - received_at)
                return
        now_ms = self.clock.wall_ms()
        draft = MessageDraft(
            self.ids.next_id(now_ms), frame.conv, user, link.device, frame.cmid, kind, body, now_ms, key
        )
        future: asyncio.Future[Message] | None = None
        if key is not None:
            future = asyncio.get_running_loop().create_future()
            self._inflight[key] = future
        self.faults.reached("before_store", frame.cmid)
        try:
            msg, created = await self.writer.append(draft)
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
        self.faults.reached("after_store", msg)
        if msg.conv.startswith("g:"):  # a membership change stored before this message: its list is stale
            removed = self._notices.before(msg.conv, msg.seq)
            if removed is not None:
                current = await self.social.group_members(int(msg.conv[2:]))
                members = recipients_at(msg.seq, members, current, removed)
        await self.writer.inbox(msg, members)
        if created:
            queue_marks(self.messages, msg.conv, user, delivered=msg.seq, read=msg.seq)
            if "file" in body:  # before the fan-out: a recipient may download the file at once
                await self.users.add_file_ref(int(body["file"]), msg.conv)
        else:
            self.metrics.dedup_hits.inc()
        # A durable duplicate means the window missed it (node restart, other node): the original's fan-out may
        # have been lost with that node, so fan out again; devices drop the duplicate by message id.
        # Fan out before remembering and acknowledging: a node killed in between leaves the sender without an
        # ack, so it resends (to another node), which meets the durable key and fans out again. Remembering first
        # would let a shared window (dedup redis) answer that resend without the fan-out ever happening.
        await self.writer.fanout(msg, members, exclude_user=user, exclude_device=link.device, quote=quote)
        self.faults.reached("after_fanout", msg)
        if key is not None:
            # A message created by this send has this send's body, so its fingerprint is already known.
            stored_fp = fp if created else fingerprint(msg.conv, msg.kind.value, msg.body)
            await self.dedup.remember(key, DedupRecord(msg.id, msg.conv, msg.seq, msg.ts_ms, stored_fp))
        self._push_ack(link, frame.cmid, msg.id, msg.conv, msg.seq, msg.ts_ms, not created)
        self.faults.reached("after_ack", msg)
        self.metrics.send_ack_seconds.observe(self.clock.monotonic() - received_at)

    async def _reply_quote(self, user: int, conv: str, seq: int) -> dict[str, Any]:
        """Check that ``user`` may quote message ``seq`` of ``conv``; the quote every recipient of the fan-out
        may see (one frame for all: a member who joined after the original gets "unavailable")."""
        first = await self.social.first_readable_seq(user, conv)
        original = await message_at(self.messages, conv, seq) if seq >= first else None
        if original is None or original.kind not in CLIENT_KINDS:
            raise WsimError(ErrorCode.NOT_FOUND, "reply_to: no message with this seq that you can read here")
        # A recalled original is accepted (its quote says "recalled"): a resend of a reply whose original was
        # recalled after the first copy was stored must still get its ack, not an error.
        readable = True
        if conv.startswith("g:"):
            windows = await self.social.group_members(int(conv[2:]))
            readable = all(int(v[1]) <= seq for v in windows.values())
        return quote_of(original, seq, readable)

    async def _dedup_hit(self, key: str) -> Message | DedupRecord | None:
        pending = self._inflight.get(key)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except WsimError:
                return None  # the first copy failed; this one tries again
        return await self.dedup.lookup(key)

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
        self.metrics.dedup_hits.inc()
        self._push_ack(link, cmid, msg_id, conv, seq, ts, True)

    # ---------------------------------------------------------------- recall
    async def recall(self, link: DeviceLink, msg_id: str) -> None:
        user = link.user
        try:
            msg = await self.messages.get_message(parse_id(msg_id))
        except ValueError:
            msg = None
        if msg is None:
            raise WsimError(ErrorCode.NOT_FOUND, "no such message")
        first = await self.social.first_readable_seq(user, msg.conv)
        if msg.seq < first:
            raise WsimError(ErrorCode.NOT_FOUND, "no such message")
        if msg.sender != user or msg.kind not in CLIENT_KINDS:
            raise WsimError(ErrorCode.FORBIDDEN, "you can only recall your own messages")
        if msg.recalled:
            return
        age_s = (self.clock.wall_ms() - msg.ts_ms) / 1000
        if age_s > self.limits.recall_window_s:
            raise WsimError(
                ErrorCode.RECALL_WINDOW,
                f"messages can be recalled within {self.limits.recall_window_s:g} s of sending",
            )
        try:
            await self.messages.mark_recalled(msg.id)
        except StoreUnavailable:
            raise WsimError(ErrorCode.UNAVAILABLE, "message store unavailable; try again") from None
        now_ms = self.clock.wall_ms()
        event_id = self.ids.next_id(now_ms)
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
        event, _ = await self.writer.append(draft)
        members = await self.social.conversation_members(msg.conv)
        await self.writer.inbox(event, members)
        await self.writer.fanout(event, members)

    async def dead_letter(self, link: DeviceLink, pending: Pending) -> None:
        self.metrics.dead_letters.inc()
        now_ms = self.clock.wall_ms()
        letter = DeadLetter(
            self.ids.next_id(now_ms),
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
            await self.messages.add_dead_letter(letter)
        except StoreUnavailable:
            log.warning(
                "dead letter for message %s to %s/%s not recorded: store unavailable",
                pending.msg_id,
                link.user,
                link.device,
            )
