"""GroupCommit with marks held in memory (``marks_delay_s``): merged per pair, visible as pending, written in one
batch, retried after a failed write; with the delay 0 (MySQL, MongoDB) every commit carries them as before."""

from __future__ import annotations

import asyncio

from core.metrics import Metrics
from core.models import AppendResult, MessageDraft
from strategies.store.group_commit import GroupCommit, MarksBatch


class FakeBackend:
    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.written: list[MarksBatch] = []
        self.marks_written = asyncio.Event()

    async def commit(self, drafts: list[MessageDraft], marks: MarksBatch) -> list[AppendResult]:
        assert not drafts
        if marks and self.fail_first:
            self.fail_first -= 1
            raise OSError("disk unplugged")
        if marks:
            self.written.append({k: list(v) for k, v in marks.items()})
            self.marks_written.set()
        return []


async def test_queued_marks_merge_show_as_pending_and_are_written_together() -> None:
    backend = FakeBackend()
    gc = GroupCommit("fake", backend.commit, 10, Metrics(), marks_delay_s=0.05)
    gc.start()
    gc.queue_marks("d:1:2", 2, 3, 0)
    gc.queue_marks("d:1:2", 2, 5, 1)
    gc.queue_marks("d:1:2", 2, 4, 2)
    gc.queue_marks("d:1:2", 1, 5, 5)
    assert gc.pending_marks()[0] == {("d:1:2", 2): [5, 2], ("d:1:2", 1): [5, 5]}
    await asyncio.wait_for(backend.marks_written.wait(), 10)
    assert backend.written == [{("d:1:2", 2): [5, 2], ("d:1:2", 1): [5, 5]}]
    assert gc.pending_marks() == ({}, {})
    await gc.close()


async def test_a_failed_mark_write_is_retried() -> None:
    backend = FakeBackend(fail_first=1)
    gc = GroupCommit("fake", backend.commit, 10, Metrics(), marks_delay_s=0.01)
    gc.start()
    gc.queue_marks("d:1:2", 2, 7, 0)
    await asyncio.wait_for(backend.marks_written.wait(), 10)
    assert backend.written == [{("d:1:2", 2): [7, 0]}]
    await gc.close()


async def test_close_writes_what_is_pending_and_set_marks_does_not_wait_for_the_delay() -> None:
    backend = FakeBackend()
    gc = GroupCommit("fake", backend.commit, 10, Metrics(), marks_delay_s=3600)
    gc.start()
    gc.queue_marks("d:1:2", 2, 1, 0)
    await asyncio.wait_for(gc.set_marks("d:1:3", 2, 4, 4), 10)
    assert backend.written == [{("d:1:2", 2): [1, 0], ("d:1:3", 2): [4, 4]}]
    gc.queue_marks("d:1:2", 2, 9, 0)
    await asyncio.wait_for(gc.close(), 10)
    assert backend.written[-1] == {("d:1:2", 2): [9, 0]}


async def test_without_a_delay_every_mark_goes_with_the_next_commit() -> None:
    backend = FakeBackend()
    gc = GroupCommit("fake", backend.commit, 10, Metrics())
    gc.start()
    gc.queue_marks("d:1:2", 2, 1, 0)
    await asyncio.wait_for(backend.marks_written.wait(), 10)
    assert backend.written == [{("d:1:2", 2): [1, 0]}]
    await gc.close()
