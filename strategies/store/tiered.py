"""Hot / warm / cold tiering of messages, and the reads that page across the tiers.

Tiers (``store.tiering``; rules and formats in docs/database.md):

* hot: the primary message store; every write goes here; messages up to ``hot_days`` (7) old;
* warm: a second message store of any kind (another table/collection in the same database, or another DSN);
  messages ``hot_days`` to ``warm_days`` (90) old;
* cold: gzip JSON-lines objects in an :class:`~strategies.store.archive.Archive` (local directory or S3).

The job (:class:`TierJob`, run by ``wsim tier`` or on a schedule inside the server) moves the oldest messages one
batch at a time, always *copy, then delete from the source*:

* hot -> warm: ``warm.import_messages(batch)`` (a no-op for copies already there), then ``hot.delete_messages``;
* warm -> cold: per conversation, the seqs the archive already holds are left out, the rest is written as a new
  object (atomic put), then the batch is deleted from warm.

Each step (one batch) holds the store's step lock, which a recall takes too, so a recall never lands on a copy that
the step is about to delete. A recall is looked up in hot, then warm, then cold (strategies/store/archive.py: a
marker and a rewrite of the object); configuration refuses ``hot_days`` shorter than the recall window, so in
normal operation only hot messages are recalled.

Interrupted anywhere, the job leaves every message in at least one tier (the copy precedes the delete), and a rerun
finds the same oldest messages, skips what the destination holds and finishes the delete: nothing lost, nothing
stored twice. Readers merge tiers by seq, so a message visible in two tiers during a move is returned once.
The hot store keeps each conversation's counter when its messages leave, so new messages never reuse a seq.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.models import AppendResult, ConversationHead, DeadLetter, Marks, Message, MessageDraft
from strategies._aio import cancel_and_wait
from strategies.context import StrategyContext
from strategies.store.archive import Archive, ColdTier, conv_prefix, encode_cold, encode_index
from strategies.store.base import TierableStore
from strategies.store.config import TieringConfig

log = logging.getLogger(__name__)

DAY_MS = 86_400_000


@dataclass
class TierReport:
    to_warm: int = 0
    to_cold: int = 0
    cold_objects: int = 0
    batches: int = 0
    skipped_present: int = 0  # copies the destination already held (a resumed run)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "to_warm": self.to_warm,
            "to_cold": self.to_cold,
            "cold_objects": self.cold_objects,
            "batches": self.batches,
            "skipped_present": self.skipped_present,
        }


class TierJob:
    def __init__(
        self,
        hot: TierableStore,
        warm: TierableStore,
        cold: ColdTier,
        config: TieringConfig,
        ctx: StrategyContext,
        step_lock: asyncio.Lock | None = None,
    ) -> None:
        self.hot = hot
        self.warm = warm
        self.cold = cold
        self.cfg = config
        self.clock = ctx.clock
        self.step_lock = step_lock or asyncio.Lock()

    async def run(self, max_batches: int | None = None) -> TierReport:
        """Move everything that is due; ``max_batches`` bounds one run (the schedule runs often, a little each)."""
        report = TierReport()
        now = self.clock.wall_ms()
        hot_cutoff = now - int(self.cfg.hot_days * DAY_MS)
        cold_cutoff = now - int(self.cfg.warm_days * DAY_MS)
        while max_batches is None or report.batches < max_batches:
            batch = await self.hot.oldest(hot_cutoff, self.cfg.batch)
            if not batch:
                break
            await self.move_to_warm(batch, report)
        while max_batches is None or report.batches < max_batches:
            batch = await self.warm.oldest(cold_cutoff, self.cfg.batch)
            if not batch:
                break
            await self.move_to_cold(batch, report)
        return report

    async def move_to_warm(self, batch: Sequence[Message], report: TierReport) -> None:
        async with self.step_lock:
            await self._move_to_warm(batch, report)

    async def _move_to_warm(self, batch: Sequence[Message], report: TierReport) -> None:
        added = await self.warm.import_messages(batch)
        report.skipped_present += len(batch) - added
        await self.hot.delete_messages(batch)
        report.to_warm += len(batch)
        report.batches += 1

    async def move_to_cold(self, batch: Sequence[Message], report: TierReport) -> None:
        async with self.step_lock:
            await self._move_to_cold(batch, report)

    async def _move_to_cold(self, batch: Sequence[Message], report: TierReport) -> None:
        by_conv: dict[str, list[Message]] = {}
        for m in batch:
            by_conv.setdefault(m.conv, []).append(m)
        for conv, msgs in sorted(by_conv.items()):
            lo, hi = min(m.seq for m in msgs), max(m.seq for m in msgs)
            present = await self.cold.seqs(conv, lo, hi)
            todo = [m for m in msgs if m.seq not in present]
            report.skipped_present += len(msgs) - len(todo)
            if todo:
                name, data = encode_cold(todo)
                await self.cold.archive.put(conv_prefix(conv) + name, data)
                report.cold_objects += 1
        # the id index of the whole batch (also of copies a resumed run found present) before the source goes
        key, index = encode_index(batch)
        await self.cold.archive.put(key, index)
        await self.warm.delete_messages(batch)
        report.to_cold += len(batch)
        report.batches += 1


class TieredMessageStore:
    """The hot store for writes; history reads that continue into warm and cold when the hot tier runs out.

    Sync from a recent cursor and the newest history page are served by the hot store alone (one query); only a
    page that reaches below the oldest hot message asks the warm store, and below that the archive.
    """

    def __init__(
        self,
        hot: TierableStore,
        warm: TierableStore,
        archive: Archive,
        config: TieringConfig,
        ctx: StrategyContext,
    ) -> None:
        self.hot = hot
        self.warm = warm
        self.archive = archive
        self.cold = ColdTier(archive)
        self._step = asyncio.Lock()  # one tier-job step or one recall at a time
        self.job = TierJob(hot, warm, self.cold, config, ctx, self._step)
        self._cfg = config
        self._clock = ctx.clock
        self._metrics = ctx.metrics
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await self.hot.start()
        await self.warm.start()
        await self.archive.start()
        if self._cfg.schedule_s > 0:
            self._task = asyncio.create_task(self._schedule(), name="tier-job")

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        await self.archive.close()
        await self.warm.close()
        await self.hot.close()

    async def run_tier_job(self, max_batches: int | None = None) -> TierReport:
        async with self._lock:
            return await self.job.run(max_batches)

    async def _schedule(self) -> None:
        while True:
            await self._clock.sleep(self._cfg.schedule_s)
            try:
                report = await self.run_tier_job(max_batches=50)
                if report.batches:
                    log.info("tier job: %s", report.as_dict())
            except Exception:
                log.exception("tier job failed; it resumes at the next run")

    # ---------------------------------------------------------------- writes and marks: the hot store
    async def append(self, draft: MessageDraft) -> AppendResult:
        return await self.hot.append(draft)

    async def mark_recalled(self, msg_id: int) -> bool:
        """Hot, then warm, then cold, under the step lock (module docstring)."""
        async with self._step:
            return (
                await self.hot.mark_recalled(msg_id)
                or await self.warm.mark_recalled(msg_id)
                or await self.cold.recall(msg_id)
            )

    async def set_marks(self, conv: str, user_id: int, *, delivered: int = 0, read: int = 0) -> None:
        await self.hot.set_marks(conv, user_id, delivered=delivered, read=read)

    def queue_marks(self, conv: str, user_id: int, *, delivered: int = 0, read: int = 0) -> None:
        self.hot.queue_marks(conv, user_id, delivered=delivered, read=read)

    async def get_marks(self, conv: str) -> dict[int, Marks]:
        return await self.hot.get_marks(conv)

    async def user_marks(self, user_id: int, convs: Iterable[str]) -> dict[str, Marks]:
        return await self.hot.user_marks(user_id, convs)

    async def add_dead_letter(self, letter: DeadLetter) -> None:
        await self.hot.add_dead_letter(letter)

    async def list_dead_letters(self, limit: int, offset: int) -> list[DeadLetter]:
        return await self.hot.list_dead_letters(limit, offset)

    async def count_dead_letters(self) -> int:
        return await self.hot.count_dead_letters()

    # ---------------------------------------------------------------- reads across tiers
    async def get_message(self, msg_id: int) -> Message | None:
        """Hot, then warm, then cold (through the archive's id index)."""
        return (
            await self.hot.get_message(msg_id)
            or await self.warm.get_message(msg_id)
            or await self.cold.find(msg_id)
        )

    async def messages_before(self, conv: str, before_seq: int, limit: int) -> list[Message]:
        got: dict[int, Message] = {}
        head: int | None = None
        for tier in self._tiers():
            for m in await tier.messages_before(conv, before_seq, limit):
                got.setdefault(m.seq, m)
            top = sorted(got)[-limit:]
            # Done when the newest `limit` seqs below `before` are all here without a hole, or the conversation's
            # first message is reached; older tiers usually hold only older seqs. Not always: tiering moves by
            # time, so a message newer by seq but older by time (imported history under a newer first message,
            # skewed node clocks) can sit in an older tier above the page: the page must also reach the newest
            # seq below `before`, which takes the conversation's counter when the page stops short of `before`.
            if not top or not _contiguous(top) or (len(top) < limit and top[0] != 1):
                continue
            if top[-1] < before_seq - 1:
                if head is None:
                    head = await self._last_seq(conv)
                if top[-1] < min(head, before_seq - 1):
                    continue
            break
        return [got[s] for s in sorted(got)[-limit:]]

    async def messages_after(self, conv: str, after_seq: int, limit: int) -> list[Message]:
        got: dict[int, Message] = {}
        head: int | None = None
        for tier in self._tiers():
            for m in await tier.messages_after(conv, after_seq, limit):
                got.setdefault(m.seq, m)
            low = sorted(got)[:limit]
            # Done when the answer starts right after the cursor without a hole (a hole means a message of that
            # range has already moved) and is either a full page or reaches the conversation's newest seq (a short
            # page with newer seqs elsewhere: they are older by time and moved, see messages_before).
            if not low or low[0] != after_seq + 1 or not _contiguous(low):
                continue
            if len(low) < limit:
                if head is None:
                    head = await self._last_seq(conv)
                if low[-1] < head:
                    continue
            break
        return [got[s] for s in sorted(got)[:limit]]

    async def _last_seq(self, conv: str) -> int:
        """The conversation's counter (the hot store keeps it when messages leave)."""
        head = (await self.hot.heads([conv])).get(conv)
        return head.last_seq if head is not None else 0

    def _tiers(self) -> tuple[Any, ...]:
        return (self.hot, self.warm, self.cold)

    async def search_messages(
        self, windows: Mapping[str, int], query: str, before_id: int | None, limit: int
    ) -> list[Message]:
        """Hot and warm, merged newest first. The cold tier (compressed objects) is not searched: documented in
        docs/protocol.md "Search"; a message is searchable while it is in a database tier."""
        found = {
            m.id: m
            for tier in (self.hot, self.warm)
            for m in await tier.search_messages(windows, query, before_id, limit)
        }
        return [found[i] for i in sorted(found, reverse=True)[:limit]]

    async def heads(self, convs: Iterable[str]) -> dict[str, ConversationHead]:
        heads = await self.hot.heads(convs)
        for conv, head in heads.items():
            if head.last is None and head.last_seq > 0:  # the last message has moved to an older tier
                page = await self.messages_before(conv, head.last_seq + 1, 1)
                if page and page[-1].seq == head.last_seq:
                    heads[conv] = ConversationHead(conv, head.last_seq, page[-1])
        return heads


def _contiguous(seqs: list[int]) -> bool:
    return seqs[-1] - seqs[0] + 1 == len(seqs)
