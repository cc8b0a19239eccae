"""``cancel_and_wait``: the one way a backend's close() stops its background task."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from strategies._aio import cancel_and_wait


async def test_waits_for_the_task_to_end() -> None:
    ended = asyncio.Event()

    async def work() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # clean-up that itself awaits
            ended.set()

    task = asyncio.create_task(work())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.done() and ended.is_set()


async def test_an_error_the_task_died_with_is_not_raised_again() -> None:
    async def fail() -> None:
        raise RuntimeError("lost the connection")

    task = asyncio.create_task(fail())
    await asyncio.sleep(0)
    await cancel_and_wait(task)  # no raise
    assert isinstance(task.exception(), RuntimeError)


async def test_a_task_that_swallows_its_cancel_does_not_hold_the_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A library that swallows the cancellation (redis-py#2028) must not hang a shutdown."""
    release = asyncio.Event()

    async def stubborn() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        await release.wait()  # goes on after the swallowed cancel

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task, deadline_s=0.05), timeout=5)
    assert not task.done()
    assert "did not end within" in caplog.text
    release.set()
    await task


async def test_none_is_nothing_to_stop() -> None:
    await cancel_and_wait(None)
