"""The link writer's wake-up (core/transport/link.Wakeup): a set before the wait is not lost, one wait consumes
every set made before it, a cancelled wait leaves it usable."""

from __future__ import annotations

import asyncio

from core.transport.link import Wakeup


async def test_a_set_before_the_wait_is_kept_and_consumed_once() -> None:
    w = Wakeup()
    w.set()
    w.set()
    await asyncio.wait_for(w.wait(), 1)
    waiting = asyncio.ensure_future(w.wait())
    await asyncio.sleep(0)
    assert not waiting.done()  # both sets were consumed by the first wait
    w.set()
    await asyncio.wait_for(waiting, 1)


async def test_a_cancelled_wait_leaves_it_usable() -> None:
    w = Wakeup()
    waiting = asyncio.ensure_future(w.wait())
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    w.set()  # the cancelled waiter is not resolved again
    await asyncio.wait_for(w.wait(), 1)
