"""Group commit, shared by the message stores (SQLite, MySQL, MongoDB).

Appends and receipt marks that arrive while a write is in flight are collected and written together by the
next one: one transaction (or one bulk write) per batch instead of one per message, so throughput grows with load
while each caller still returns only after its own write is durable. Marks for the same (conversation, user) are
merged (the higher seq wins) before they are written.

The backend supplies ``commit(drafts, marks) -> results`` (one AppendResult per draft, in order); this class owns
the queues, the single writer task, the error fan-out and the metrics. ``queue_marks`` is the fire-and-forget
form used on the hot path (a device's delivered ack, a sender's own read mark): it costs no task and no future,
and a failed write is logged, since a mark is an optimisation of unread counts and receipts, never a message.

Two knobs, both off unless a backend sets them (SQLite does, see docs/performance.md):

* ``marks_delay_s``: queued marks stay in memory up to this long (or until ``max_pending_marks`` pairs, a
  ``set_marks`` waiter or ``close``) and are then written in one batch, so a conversation's marks cost one upsert
  per delay instead of one per commit. Readers overlay ``pending_marks()``, so nothing reads an older mark than
  was queued; a crash loses at most the last delay's marks, which is harmless (a lost mark only delays an unread
  count or a receipt, and the next mark of that (conversation, user) supersedes it, marks only grow). A failed
  write puts the marks back to be retried after the next delay.
* ``commit_window_s``: when a commit would carry fewer than ``max_batch`` appends, wait this long first so that
  appends arriving close together share it (at low rates each would otherwise pay a commit of its own).

Both waits are on the event loop's own time: they batch I/O, they are not protocol time (the injected Clock).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass

from core.metrics import Metrics
from core.models import AppendResult, MessageDraft
from strategies.store.base import StoreUnavailable

log = logging.getLogger(__name__)

MarksBatch = dict[tuple[str, int], list[int]]  # (conv, user) -> [delivered, read]
CommitFn = Callable[[list[MessageDraft], MarksBatch], Awaitable[list[AppendResult]]]


@dataclass(slots=True)
class _Pending:
    draft: MessageDraft
    future: asyncio.Future[AppendResult]


class GroupCommit:
    def __init__(
        self,
        backend: str,
        commit: CommitFn,
        max_batch: int,
        metrics: Metrics,
        *,
        quiet_errors: tuple[type[BaseException], ...] = (),
        on_failure: Callable[[], None] | None = None,
        marks_delay_s: float = 0.0,
        max_pending_marks: int = 4096,
        commit_window_s: float = 0.0,
    ) -> None:
        """``quiet_errors``: backend errors that mean "unavailable" and need no traceback in the log;
        ``on_failure``: called after a failed batch (e.g. to forget cached sequence hints)."""
        self._backend = backend
        self._commit_fn = commit
        self._max_batch = max_batch
        self._commit_seconds = metrics.store_seconds.labels(backend, "commit")
        self._batch_size = metrics.store_batch_size
        self._quiet = quiet_errors
        self._on_failure = on_failure
        self._appends: list[_Pending] = []
        self._marks: MarksBatch = {}
        self._marks_writing: MarksBatch = {}  # taken by the commit in flight, not yet visible to readers
        self._marks_since = 0.0  # time.monotonic() when the oldest queued mark arrived
        self._marks_delay = marks_delay_s
        self._max_marks = max_pending_marks
        self._window = commit_window_s
        self._marks_waiters: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._closing = False
        self._task = asyncio.create_task(self._writer_loop(), name=f"{self._backend}-group-commit")

    async def close(self) -> None:
        """Write what is queued, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    def _check_open(self) -> None:
        if self._closing or self._task is None:
            raise StoreUnavailable(f"{self._backend} message store is closed")

    async def append(self, draft: MessageDraft) -> AppendResult:
        self._check_open()
        fut: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        self._appends.append(_Pending(draft, fut))
        self._wake.set()
        return await fut

    def queue_marks(self, conv: str, user_id: int, delivered: int, read: int) -> None:
        self._check_open()
        marks = self._marks
        if not marks:
            self._marks_since = time.monotonic()
        cur = marks.get((conv, user_id))
        if cur is None:
            marks[(conv, user_id)] = [delivered, read]
        else:
            cur[0] = max(cur[0], delivered)
            cur[1] = max(cur[1], read)
        if not self._marks_delay or len(marks) >= self._max_marks:
            self._wake.set()

    def pending_marks(self) -> tuple[MarksBatch, ...]:
        """Marks queued or being written, not yet readable from the backend: readers take the max with these."""
        return (self._marks, self._marks_writing)

    def _marks_due(self) -> bool:
        return bool(self._marks) and (
            not self._marks_delay
            or bool(self._marks_waiters)
            or self._closing
            or len(self._marks) >= self._max_marks
            or time.monotonic() - self._marks_since >= self._marks_delay
        )

    def _marks_timeout(self) -> float | None:
        """How long the writer may sleep before queued marks fall due (None: no marks queued)."""
        if not self._marks:
            return None
        return max(0.0, self._marks_since + self._marks_delay - time.monotonic())

    async def set_marks(self, conv: str, user_id: int, delivered: int, read: int) -> None:
        self.queue_marks(conv, user_id, delivered, read)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._marks_waiters.append(fut)
        self._wake.set()
        await fut

    async def _writer_loop(self) -> None:
        while True:
            timeout = self._marks_timeout() if self._marks_delay else None
            if timeout is None:
                await self._wake.wait()
            elif timeout > 0:
                with suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
            self._wake.clear()
            if self._window and 0 < len(self._appends) < self._max_batch and not self._closing:
                await asyncio.sleep(self._window)
            while self._appends or self._marks_due():
                appends = self._appends[: self._max_batch]
                del self._appends[: len(appends)]
                marks: MarksBatch = {}
                waiters: list[asyncio.Future[None]] = []
                if self._marks_due():
                    marks, self._marks = self._marks, {}
                    waiters, self._marks_waiters = self._marks_waiters, []
                self._marks_writing = marks
                try:
                    await self._commit(appends, marks, waiters)
                finally:
                    self._marks_writing = {}
            if self._closing and not self._appends and not self._marks:
                return

    async def _commit(
        self, appends: list[_Pending], marks: MarksBatch, waiters: list[asyncio.Future[None]]
    ) -> None:
        start = time.perf_counter()
        try:
            results = await self._commit_fn([p.draft for p in appends], marks)
        except Exception as exc:
            if isinstance(exc, StoreUnavailable):
                err = exc
            else:
                err = StoreUnavailable(f"{self._backend}: {exc}")
                if not isinstance(exc, self._quiet):
                    log.exception("%s group commit failed", self._backend)
            if self._on_failure is not None:
                self._on_failure()
            if marks and self._marks_delay:
                self._requeue(marks)  # retried after the next delay (close gives up: see _requeue)
            elif marks and not waiters:
                log.warning("%s: %d receipt marks not written: %s", self._backend, len(marks), err)
            for p in appends:
                if not p.future.done():
                    p.future.set_exception(err)
            for w in waiters:
                if not w.done():
                    w.set_exception(err)
            return
        self._commit_seconds.observe(time.perf_counter() - start)
        self._batch_size.observe(len(appends) + len(marks))
        for p, r in zip(appends, results, strict=True):
            if not p.future.done():
                p.future.set_result(r)
        for w in waiters:
            if not w.done():
                w.set_result(None)

    def _requeue(self, marks: MarksBatch) -> None:
        if self._closing:
            log.warning("%s: %d receipt marks not written at close", self._backend, len(marks))
            return
        log.warning("%s: %d receipt marks not written, retrying after %.1f s", self._backend, len(marks),
                    self._marks_delay)  # fmt: skip
        for key, (delivered, read) in marks.items():
            cur = self._marks.get(key)
            if cur is None:
                self._marks[key] = [delivered, read]
            else:
                cur[0] = max(cur[0], delivered)
                cur[1] = max(cur[1], read)
        self._marks_since = time.monotonic()


class GroupCommitted:
    """The message-store methods that are the group commit's own, for a store that sets ``_gc``."""

    _gc: GroupCommit

    async def append(self, draft: MessageDraft) -> AppendResult:
        return await self._gc.append(draft)

    async def set_marks(self, conv: str, user_id: int, *, delivered: int = 0, read: int = 0) -> None:
        await self._gc.set_marks(conv, user_id, delivered, read)

    def queue_marks(self, conv: str, user_id: int, *, delivered: int = 0, read: int = 0) -> None:
        self._gc.queue_marks(conv, user_id, delivered, read)
