"""What readers tell senders: delivered and read marks, the receipts they cause, and typing.

A mark is stored first, then offered to the :class:`~core.protocol.receipts.ReceiptCoalescer`, which decides
when a ``receipt`` frame goes out; the one timer that flushes it runs on the node's clock (fake time in tests).
Receipts and typing are advisory: a lost one is repaired by the marks (``GET .../receipts``) or simply missed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from core.clock import Clock, Timer
from core.config import LimitsConfig
from core.errors import ErrorCode, WsimError
from core.hub import DeviceLink
from core.metrics import Metrics
from core.protocol.codec import encode, receipt_json
from core.protocol.frames import TypingEvent
from core.protocol.receipts import ReceiptCoalescer, ReceiptDue
from core.routing import Router
from core.services.social import SocialService
from core.services.writer import queue_marks
from core.types import parse_conversation
from strategies.ack.base import AckPolicy
from strategies.store.base import MessageStore, StoreUnavailable

log = logging.getLogger(__name__)


@dataclass(eq=False)
class ReceiptService:
    """Marks and receipts of one node; holds the coalescer and its one flush timer (closed with the node)."""

    messages: MessageStore
    social: SocialService
    router: Router
    ack: AckPolicy
    clock: Clock
    metrics: Metrics
    limits: LimitsConfig

    def __post_init__(self) -> None:
        self._acks_delivered = self.metrics.acks.labels("delivered")
        self._receipts = ReceiptCoalescer(self.limits.receipt_window_s)
        self._receipt_timer: Timer | None = None
        self._receipt_timer_at: float | None = None
        self._receipt_tasks: set[asyncio.Task[None]] = set()

    # ---------------------------------------------------------------- marks
    async def _clamp_to_head(self, link: DeviceLink, conv: str, seq: int) -> int:
        """A mark never passes the newest message (issue 14, M2: a forged ack of 10^9 was stored and shown).
        A device acks what it was given, so a seq at or below what it holds needs no store read."""
        if seq <= link.held.get(conv, 0):
            return seq
        heads = await self.messages.heads([conv])
        return min(seq, heads[conv].last_seq if conv in heads else 0)

    async def mark_delivered(self, link: DeviceLink, conv: str, seq: int) -> None:
        """Cumulative: the device holds ``conv`` up to ``seq``."""
        user = link.user
        await self.social.first_readable_seq(user, conv)
        seq = await self._clamp_to_head(link, conv, seq)
        if seq <= 0:
            return
        link.note_held(conv, seq)
        self._acks_delivered.inc()
        queue_marks(self.messages, conv, user, delivered=seq)
        # Groups get read counts, not per-member delivered receipts (200x the traffic).
        if conv.startswith("d:"):
            await self._offer_receipt(conv, user, delivered=seq)

    async def mark_read(self, link: DeviceLink, conv: str, seq: int) -> None:
        user = link.user
        await self.social.first_readable_seq(user, conv)
        heads = await self.messages.heads([conv])
        last = heads[conv].last_seq if conv in heads else 0
        seq = min(seq, last)
        if seq <= 0:
            return
        try:
            await self.messages.set_marks(conv, user, delivered=seq, read=seq)
        except StoreUnavailable:
            raise WsimError(ErrorCode.UNAVAILABLE, "message store unavailable; try again") from None
        link.note_held(conv, seq)
        self.metrics.acks.labels("read").inc()
        await self._offer_receipt(conv, user, read=seq, device=link.device)

    # ---------------------------------------------------------------- receipts (coalesced)
    async def _offer_receipt(
        self, conv: str, user: int, *, delivered: int = 0, read: int = 0, device: str | None = None
    ) -> None:
        now = self.clock.monotonic()
        for due in self._receipts.offer(conv, user, now, delivered=delivered, read=read, device=device):
            await self._send_receipt(due)
        self._arm_receipt_flush(self._receipts.next_due())

    async def _send_receipt(self, due: ReceiptDue) -> None:
        frame = receipt_json(due.conv, due.user, delivered=due.delivered, read=due.read)
        if due.read is None:  # delivered only: the peer of a direct chat
            _, parts = parse_conversation(due.conv)
            targets = [parts[0] if parts[1] == due.user else parts[1]]
            for r in self.ack.receipts(frame):
                await self.router.deliver(targets, r)
            return
        members = await self.social.conversation_members(due.conv)
        for r in self.ack.receipts(frame):
            await self.router.deliver(members, r, exclude_user=due.user, exclude_device=due.device)

    def _arm_receipt_flush(self, due: float | None) -> None:
        """The one place that schedules the coalesced-receipt flush, on the node's clock (fake time in tests)."""
        if due is None or (self._receipt_timer_at is not None and self._receipt_timer_at <= due):
            return
        if self._receipt_timer is not None:
            self._receipt_timer.cancel()
        self._receipt_timer_at = due
        self._receipt_timer = self.clock.call_at(due, self._on_receipt_timer)

    def _on_receipt_timer(self) -> None:
        self._receipt_timer = self._receipt_timer_at = None
        dues, next_due = self._receipts.flush(self.clock.monotonic())
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
        members = await self.social.authorize_send(link.user, conv)
        others = [m for m in members if m != link.user]
        await self.router.deliver(others, encode(TypingEvent(conv=conv, user=str(link.user))))

    async def receipts(self, user: int, conv: str) -> dict[str, Any]:
        """Every member's marks in ``conv`` (group read counts are computed from these by clients)."""
        await self.social.first_readable_seq(user, conv)
        marks = await self.messages.get_marks(conv)
        return {
            "conv": conv,
            "marks": {str(u): {"delivered": m.delivered, "read": m.read} for u, m in marks.items()},
        }
