"""Asyncio plumbing that backends of every kind share (standard library only, so any strategy may import it)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | asyncio.Future[Any] | None) -> None:
    """Stop a background task at ``close()``: cancel it and wait until it has ended, so nothing of it runs on after
    the owner has closed. An error the task ended with is not raised again: the owner is shutting down, and the
    task logged what mattered when it happened."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
