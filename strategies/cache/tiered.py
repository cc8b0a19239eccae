"""``l1+l2``: the per-process L1 in front of the shared Redis L2, with cross-node L1 invalidation.

Read-through: L1, then L2 (a hit fills L1), then the caller's loader (which fills both). A write deletes the key in
L1, in L2, and publishes the deletion on ``<prefix>cache-inval`` in the same round trip as the L2 delete; every
other node drops its L1 copy when the message arrives.

Consistency (what a reader may see stale, and for how long):

* on the writing node: nothing stale once the write call returns;
* on another node: its L1 copy until the invalidation arrives (normally well under a millisecond on a LAN).
  Redis pub/sub is at most once: a node that is disconnected from Redis misses publications, so when its
  subscription breaks it clears its whole L1 and clears it again once resubscribed. The remaining exposure is a
  publication lost without the connection breaking, bounded by the L1 TTL (5 min);
* L2 itself: see strategies/cache/redis.py (leases; stale only while Redis is unreachable).

Warm-up: L2 counts a sample of reads per key in a sorted set per cache name; on start this node copies the most read
``warm_up_keys`` entries of each ``warm_up`` name from L2 into its L1, so a restarted node does not send its first
minutes of traffic to L2 and the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

import orjson
from redis.exceptions import RedisError

from strategies._aio import cancel_and_wait
from strategies.cache.base import MISS
from strategies.cache.config import TwoTierCacheConfig
from strategies.cache.l1 import L1Cache
from strategies.cache.redis import RedisCache
from strategies.context import StrategyContext

log = logging.getLogger(__name__)


class TwoTierCache:
    def __init__(self, config: TwoTierCacheConfig, ctx: StrategyContext) -> None:
        self._cfg = config
        self._clock = ctx.clock
        self.l1 = L1Cache(config.l1, ctx, tier="l1")
        self.l2 = RedisCache(config.l2, ctx, tier="l2")
        # Unique per process: several nodes may share a node name in tests, and a node ignores its own messages.
        self._origin = f"{ctx.node_name}-{secrets.token_hex(4)}"
        self._channel = f"{config.l2.prefix}cache-inval"
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self.invalidations_received = 0

    async def get(self, name: str, key: str) -> Any:
        value = self.l1.peek(name, key)
        if value is not MISS:
            return value
        value = await self.l2.get(name, key)
        if value is not MISS:
            self.l1.fill(name, key, value)
        return value

    async def set(self, name: str, key: str, value: Any) -> None:
        await self.l2.set(name, key, value)
        self.l1.fill(name, key, value)

    async def delete(self, name: str, key: str) -> None:
        self.l1.evict(name, key)
        payload = orjson.dumps({"o": self._origin, "n": name, "k": key})
        await self.l2.delete(name, key, publish=(self._channel, payload))

    async def start(self) -> None:
        await self.l2.start()
        self._task = asyncio.create_task(self._listen(), name="cache-invalidation")
        await asyncio.wait_for(self._subscribed.wait(), timeout=10)
        await self._warm_up()

    async def _warm_up(self) -> None:
        for name in self._cfg.warm_up:
            try:
                entries = await self.l2.hot_entries(name, self._cfg.warm_up_keys)
            except RedisError as exc:
                log.warning("cache warm-up of %r skipped: %r", name, exc)
                continue
            for key, value in entries:
                self.l1.fill(name, key, value)
            log.info("cache warm-up: %d %r entries into L1", len(entries), name)

    async def _listen(self) -> None:
        backoff = 0.1
        while True:
            r = self.l2.redis
            if r is None:
                return
            pubsub = r.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                # Whatever was published while we were not subscribed is lost: forget L1 (it refills from L2).
                self.l1.clear()
                self._subscribed.set()
                backoff = 0.1
                while True:
                    msg = await pubsub.get_message(timeout=None)
                    if msg is None or msg.get("type") != "message":
                        continue
                    self._on_invalidation(msg["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("cache invalidation subscription lost (%r); L1 cleared, resubscribing", exc)
                self.l1.clear()
                await self._clock.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    def _on_invalidation(self, data: bytes) -> None:
        try:
            msg = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if msg.get("o") == self._origin:
            return
        self.invalidations_received += 1
        self.l1.evict(str(msg["n"]), str(msg["k"]))

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        await self.l1.close()
        await self.l2.close()
