from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    DeliveryMode,
)
from yarl import URL

from strategies._aio import cancel_and_wait
from strategies.bus.config import RabbitmqBusConfig
from strategies.bus.endpoint import BROADCAST, BusFrame
from strategies.bus.framed import BrokerBus, all_confirmed, not_connected, reconnect_delay_s
from strategies.context import StrategyContext

log = logging.getLogger(__name__)

_ACK_EVERY = 64
_CONNECTION_ERRORS = (aiormq.exceptions.AMQPError, aio_pika.exceptions.AMQPException, OSError, TimeoutError)


class RabbitmqBus(BrokerBus):
    """RabbitMQ: a durable direct exchange ``<prefix>.bus``; each node consumes its own durable queue
    ``<prefix>.node.<node>``, bound with the node's name and with ``*`` (broadcast).

    * delivery: **at least once** from publisher to queue, and from queue to node. A publish returns only after
      the broker's publisher confirm (the frame is in the target queue); the node acknowledges frames
      (cumulatively) after its handler ran, so frames in flight when the connection drops are redelivered (duplicates are dropped by
      sequence number, so the hub sees each frame once). The queue outlives a dropped connection: frames
      published while a node reconnects wait for it. A publish the broker did not confirm is followed by a gap
      notice; a re-made consumer is reported as a gap too (conservatively: redelivery would usually cover it).
      Non-persistent messages (the default) are lost if the broker itself restarts: that is a reconnect, hence
      a gap, hence a resync.
    * order: one queue per node with a single consumer, handled one frame at a time: a node receives each
      publisher's frames in publish order, so a group's messages cross the cluster in seq order.
    * targeting: one publish per target node (the payload is encoded once); envelopes for this node never
      leave the process. A queue whose node has been gone for ``queue_expires_s`` is deleted by the broker.
    * failure: a publish never raises to the caller. On start the node purges its queue (envelopes for a
      previous incarnation's devices are stale: devices sync on connect).
    * cost: a confirm round trip per publish (pipelined: many publishes wait for confirms at once).
    """

    def __init__(self, config: RabbitmqBusConfig, ctx: StrategyContext) -> None:
        super().__init__("rabbitmq", config, ctx)
        self._cfg = config
        self._exchange: AbstractExchange | None = None
        self._conn: AbstractConnection | None = None
        self._delivery_mode = DeliveryMode.PERSISTENT if config.persistent else DeliveryMode.NOT_PERSISTENT
        self._exchange_name = f"{config.prefix}.bus"

    def connection_name(self, node: str) -> str:
        """The AMQP connection name (tests and operators find the node's connection by it)."""
        return f"wsim-bus:{self._cfg.prefix}:{node}"

    def _url(self) -> URL:
        url = URL(self._cfg.url)
        if "heartbeat" not in url.query:
            url = url.update_query(heartbeat=self._cfg.heartbeat_s)
        return url

    @property
    def _unreachable(self) -> str:
        return f"rabbitmq bus: cannot reach {self._cfg.url}"

    # ---------------------------------------------------------------- publishing
    def _send(self, frames: list[BusFrame]) -> Awaitable[None]:
        """Start the publishes now, in order (they queue on the channel's FIFO lock); wait for the confirms."""
        exchange = self._exchange
        if exchange is None:
            return not_connected("rabbitmq bus is not connected")
        tasks = [
            asyncio.ensure_future(
                exchange.publish(
                    aio_pika.Message(self._framed.encode(f), delivery_mode=self._delivery_mode),
                    routing_key=f.stream,
                    mandatory=False,  # a node that is gone has no queue: dropping is right
                    timeout=self._cfg.publish_timeout_s,
                )
            )
            for f in frames
        ]
        return all_confirmed(tasks, "rabbitmq publish not confirmed")

    # ---------------------------------------------------------------- connection and consumer
    async def _declare(self, node: str, conn: AbstractConnection, first: bool) -> aio_pika.abc.AbstractQueue:
        cfg = self._cfg
        pub_channel = await conn.channel(publisher_confirms=True)
        exchange = await pub_channel.declare_exchange(
            self._exchange_name, aio_pika.ExchangeType.DIRECT, durable=True
        )
        consume_channel: AbstractChannel = await conn.channel()
        await consume_channel.set_qos(prefetch_count=cfg.prefetch)
        queue = await consume_channel.declare_queue(
            f"{cfg.prefix}.node.{node}",
            durable=True,
            arguments={"x-expires": int(cfg.queue_expires_s * 1000), "x-queue-type": cfg.queue_type},
        )
        await queue.bind(self._exchange_name, routing_key=node)
        await queue.bind(self._exchange_name, routing_key=BROADCAST)
        if first:
            await queue.purge()
        self._exchange = exchange
        return queue

    async def _consume(self, queue: aio_pika.abc.AbstractQueue, ready: asyncio.Future[None]) -> None:
        """Handle frames one at a time in queue order; acknowledge cumulatively (``multiple``) when the local
        backlog is drained or every ``_ACK_EVERY`` frames: one ack frame per burst instead of one per message
        (measured: per-message acks halved the frames/s a node could take)."""
        inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        tag = await queue.consume(inbox.put, no_ack=False)
        try:
            if not ready.done():
                ready.set_result(None)
            else:
                await self._framed.resubscribed("consumer re-made after a disconnect")
            unacked = 0
            while True:
                message = await inbox.get()
                await self._framed.on_raw(message.body)
                unacked += 1
                if unacked >= _ACK_EVERY or inbox.empty():
                    await message.ack(multiple=True)
                    unacked = 0
        finally:
            with contextlib.suppress(Exception):
                await queue.cancel(tag)

    async def _run(self, node: str, ready: asyncio.Future[None]) -> None:
        cfg = self._cfg
        attempt = 0
        first = True
        while not self._closing:
            conn: AbstractConnection | None = None
            try:
                conn = await aio_pika.connect(
                    self._url(),
                    timeout=cfg.publish_timeout_s,
                    client_properties={"connection_name": self.connection_name(node)},
                )
                self._conn = conn
                queue = await self._declare(node, conn, first)
                first = False
                attempt = 0
                consumer = asyncio.ensure_future(self._consume(queue, ready))
                # The connection or the consuming channel closing (the broker's doing or ours) ends this round.
                closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

                def lost(*_: Any, closed: asyncio.Future[None] = closed) -> None:
                    if not closed.done():
                        closed.set_result(None)

                conn.close_callbacks.add(lost)
                queue.channel.close_callbacks.add(lost)
                done, _ = await asyncio.wait({consumer, closed}, return_when=asyncio.FIRST_COMPLETED)
                for t in (consumer, closed):
                    if t not in done:
                        await cancel_and_wait(t)
                if consumer in done and consumer.exception() is not None:
                    raise consumer.exception()  # type: ignore[misc]
                raise ConnectionError("connection closed")
            except asyncio.CancelledError:
                raise
            except (*_CONNECTION_ERRORS, ConnectionError) as exc:
                if not self._closing:
                    log.warning("rabbitmq bus connection of %s lost (%r); reconnecting", node, exc)
            finally:
                self._exchange = None
                self._conn = None
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
            delay = reconnect_delay_s(cfg, attempt)
            attempt += 1
            await asyncio.sleep(delay)

    async def close(self) -> None:
        self._closing = True  # before the connection goes: _run must not take it for a loss
        if self._conn is not None:
            with contextlib.suppress(
                Exception
            ):  # TimeoutError included: a silent broker must not hold a shutdown
                async with asyncio.timeout(self._cfg.publish_timeout_s):
                    await self._conn.close()
        await super().close()
