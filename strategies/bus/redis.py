from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from strategies import _redis
from strategies._aio import cancel_and_wait
from strategies.bus.base import BusHandler, GapHandler
from strategies.bus.config import RedisBusConfig
from strategies.bus.endpoint import BROADCAST, BusFrame
from strategies.bus.framed import BrokerBus, reconnect_delay_s
from strategies.context import StrategyContext

log = logging.getLogger(__name__)

_HEALTH_PING = "wsim-bus-health"


class RedisBus(BrokerBus):
    """Redis pub/sub: one channel per node (``<prefix>:bus:<node>``) and one broadcast channel.

    * delivery: **at most once** per frame. Pub/sub stores nothing: a node that is disconnected, or that Redis
      disconnects for falling behind (``client-output-buffer-limit pubsub``), misses what was published
      meanwhile. Every such loss becomes a gap: the subscriber reports the re-made subscription, per-stream
      sequence numbers reveal frames lost while connected, and a publish Redis did not take is followed by a gap
      notice to its target (see :mod:`strategies.bus.endpoint`). Devices then resync from the store.
    * order: per publisher and target, in publish order. All publishes of a node go through one writer task
      that sends them as ordered pipelines, and Redis delivers a channel's messages in the order it ran the
      PUBLISH commands.
    * targeting: one PUBLISH per target node (the payload is encoded once; Redis copies it per channel), so a
      message reaches only the nodes that hold its recipients. Envelopes for this node never leave the process.
    * failure: a publish never raises to the caller; a lost subscription is retried with backoff and reported
      as a gap once it is back (before that the node's devices could not receive anything through it anyway).
    * cost: the cheapest broker round trip of the three (~0.1 ms on loopback); no persistence, no acks.
    """

    def __init__(self, config: RedisBusConfig, ctx: StrategyContext) -> None:
        super().__init__("redis", config, ctx)
        self._cfg = config
        self._pub: aioredis.Redis | None = None
        self._queue: asyncio.Queue[tuple[list[BusFrame], asyncio.Future[None]]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    @property
    def _unreachable(self) -> str:
        return f"redis bus: cannot subscribe at {self._cfg.url}"

    def _channel(self, stream: str) -> str:
        if stream == BROADCAST:
            return f"{self._cfg.prefix}:bus-all"
        return f"{self._cfg.prefix}:bus:{stream}"

    def _client(self) -> aioredis.Redis:
        # No retries inside redis-py: a failed publish becomes a gap notice, a failed subscription a reconnect
        # with our own backoff, so nothing is silently re-sent out of order.
        return aioredis.Redis.from_url(
            self._cfg.url,
            retry=Retry(NoBackoff(), 0),
            socket_timeout=self._cfg.publish_timeout_s,
            socket_connect_timeout=self._cfg.publish_timeout_s,
        )

    async def start(self, node: str, handler: BusHandler, on_gap: GapHandler) -> None:
        """The subscriber is the base's task (``_run``); publishes go through a writer task of their own."""
        self._pub = self._client()
        self._writer = asyncio.create_task(self._write_loop(), name="redis-bus-writer")
        await super().start(node, handler, on_gap)

    # ---------------------------------------------------------------- publishing
    def _send(self, frames: list[BusFrame]) -> Awaitable[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._writer is None or self._writer.done():
            done.set_exception(ConnectionError("redis bus writer is not running"))
        else:
            self._queue.put_nowait((frames, done))
        return done

    async def _write_loop(self) -> None:
        """Drain queued publishes into pipelines, one at a time: publish order is the order on the wire."""
        assert self._pub is not None
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            pipe = self._pub.pipeline(transaction=False)
            for frames, _ in batch:
                for f in frames:
                    pipe.publish(self._channel(f.stream), self._framed.encode(f))
            try:
                await asyncio.wait_for(pipe.execute(), self._cfg.publish_timeout_s)
            except (RedisError, OSError, TimeoutError, asyncio.CancelledError) as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(ConnectionError(f"redis publish failed: {exc!r}"))
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            finally:
                await pipe.reset()  # type: ignore[no-untyped-call]
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)

    # ---------------------------------------------------------------- subscribing
    async def _run(self, node: str, ready: asyncio.Future[None]) -> None:
        cfg = self._cfg
        channels = [self._channel(node), self._channel(BROADCAST)]
        attempt = 0
        loop = asyncio.get_running_loop()
        while not self._closing:
            client = self._client()
            ps = client.pubsub()
            try:
                await ps.subscribe(*channels)
                confirmed = 0
                while confirmed < len(channels):
                    msg = await ps.get_message(timeout=cfg.publish_timeout_s)
                    if msg is None:
                        raise TimeoutError("no subscribe confirmation")
                    if msg["type"] == "subscribe":
                        confirmed += 1
                attempt = 0
                if not ready.done():
                    ready.set_result(None)
                else:
                    await self._framed.resubscribed("subscription re-made after a disconnect")
                last_rx = loop.time()
                pinged = False
                while True:
                    msg = await ps.get_message(timeout=1.0)
                    now = loop.time()
                    if msg is None:
                        if now - last_rx > cfg.health_check_s * 2:
                            raise TimeoutError("redis stopped answering the subscriber's pings")
                        if now - last_rx > cfg.health_check_s and not pinged:
                            await ps.ping(_HEALTH_PING)
                            pinged = True
                        continue
                    last_rx, pinged = now, False
                    if msg["type"] == "message":
                        await self._framed.on_raw(msg["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("redis bus subscriber for %s lost (%r); reconnecting", node, exc)
            finally:
                with contextlib.suppress(Exception):
                    await ps.aclose()
                    await client.aclose()
            delay = reconnect_delay_s(cfg, attempt)
            attempt += 1
            await asyncio.sleep(delay)

    async def close(self) -> None:
        await super().close()
        await cancel_and_wait(self._writer)
        self._writer = None
        while not self._queue.empty():
            _, fut = self._queue.get_nowait()
            if not fut.done():
                fut.set_exception(ConnectionError("bus closed"))
        if self._pub is not None:
            await _redis.close(self._pub, self._cfg.publish_timeout_s)
            self._pub = None
