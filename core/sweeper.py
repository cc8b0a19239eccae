"""Anti-entropy for online devices: a message that is stored but whose fan-out never happened still reaches them.

The send path acknowledges only after the fan-out was handed to the bus, and a sender without an ack resends
(which fans out again). But a node can die after the store write and before the fan-out while the sender dies
too (or never resends): the message is durable, yet online recipients on other nodes would see it only at their
next reconnect. Every ``sync.sweep_interval_s`` each node compares, for a batch of its local devices, the store
heads of their conversations with what each device is known to hold (``DeviceLink.held``: pushes written, its
cumulative acks, the cursors and batches of its syncs, its own sent acks) and asks the devices that are behind
to sync (``sync.required``). A head younger than ``sync.sweep_grace_s`` is left alone: its fan-out may be on its
way. The decision is the pure function :func:`behind`; the sweeper only reads and asks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from core.clock import Clock
from core.hub import DeviceLink, Hub
from core.metrics import Metrics
from core.models import ConversationHead
from core.services.social import SocialService
from strategies.store.base import MessageStore, StoreUnavailable

log = logging.getLogger(__name__)


def behind(
    held: Mapping[str, int],
    heads: Mapping[str, ConversationHead],
    opened_ms: int,
    now_ms: int,
    grace_ms: int,
) -> list[str]:
    """Conversations whose head is past what the device holds, by a message older than the grace.

    A conversation the device has no record of is judged by its head's time: messages stored before the device
    connected came with its first sync; a newer one is missing."""
    out: list[str] = []
    for conv, head in heads.items():
        last = head.last
        if last is None or last.ts_ms > now_ms - grace_ms:
            continue
        have = held.get(conv)
        if have is None:
            if last.ts_ms > opened_ms:
                out.append(conv)
        elif head.last_seq > have:
            out.append(conv)
    return out


@dataclass(eq=False)
class Sweeper:
    hub: Hub
    social: SocialService
    messages: MessageStore
    clock: Clock
    metrics: Metrics
    interval_s: float
    grace_s: float
    batch: int

    def __post_init__(self) -> None:
        self._grace_ms = int(self.grace_s * 1000)
        self._cursor = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.interval_s > 0 and self._task is None:
            self._task = asyncio.create_task(self._run(), name="wsim-sweeper")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        while True:
            await self.clock.sleep(self.interval_s)
            try:
                await self.sweep_once()
            except StoreUnavailable as exc:
                log.warning("sweep skipped: %s", exc)
            except Exception:
                log.exception("sweep failed")

    def _next_batch(self) -> list[DeviceLink]:
        links = list(self.hub.all_links())
        if len(links) <= self.batch:
            self._cursor = 0
            return links
        start = self._cursor % len(links)
        chosen = (links[start:] + links[:start])[: self.batch]
        self._cursor = start + self.batch
        return chosen

    async def sweep_once(self) -> int:
        """Examine one batch of local devices; return how many were asked to sync."""
        links = self._next_batch()
        if not links:
            return 0
        convs_of: dict[int, list[str]] = {}
        for link in links:
            if link.user not in convs_of:
                convs_of[link.user] = await self.social.user_conversations(link.user)
        heads = await self.messages.heads({c for convs in convs_of.values() for c in convs})
        now_ms = self.clock.wall_ms()
        asked = 0
        for link in links:
            if not self.hub.is_current(link):
                continue
            mine = {c: heads[c] for c in convs_of[link.user] if c in heads}
            stale = behind(link.held, mine, link.opened_ms, now_ms, self._grace_ms)
            if stale:
                log.info("sweep: %s/%s behind in %s", link.user, link.device, ", ".join(stale[:5]))
                link.request_sync("sweep")
                asked += 1
        if asked:
            self.metrics.sweep_resyncs.inc(asked)
        return asked
