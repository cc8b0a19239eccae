"""Asyncio plumbing that backends of every kind share (standard library only, so any strategy may import it)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

log = logging.getLogger(__name__)

# How long close() waits for a cancelled background task to end. A task ends at its next await once cancelled,
# unless a library swallows the cancellation: redis-py has done so when the cancel lands inside its own timeout
# block (redis/redis-py#2028, #2551), and a contract test's teardown then hung until pytest's 300 s timeout.
CANCEL_DEADLINE_S = 5.0


async def cancel_and_wait(
    task: asyncio.Task[Any] | asyncio.Future[Any] | None, deadline_s: float = CANCEL_DEADLINE_S
) -> None:
    """Stop a background task at ``close()``: cancel it and wait until it has ended, so nothing of it runs on after
    the owner has closed; give up after ``deadline_s`` (logged), so a task that swallowed its cancellation never
    holds a shutdown. An error the task ended with is not raised again: the owner is shutting down, and the task
    logged what mattered when it happened."""
    if task is None:
        return
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=deadline_s)
    if not done:
        log.warning(
            "%r did not end within %.1f s of its cancel; not waiting for it any longer", task, deadline_s
        )
        return
    if not task.cancelled():
        with contextlib.suppress(Exception):
            task.exception()  # retrieved, so asyncio does not log it again as never retrieved
