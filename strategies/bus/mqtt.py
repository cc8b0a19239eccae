from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from strategies.bus.config import MqttBusConfig
from strategies.bus.endpoint import BROADCAST, BusFrame
from strategies.bus.framed import BrokerBus, all_confirmed, not_connected, reconnect_delay_s
from strategies.context import StrategyContext

log = logging.getLogger(__name__)


class MqttBus(BrokerBus):
    """MQTT 5 (aiomqtt, e.g. Mosquitto): topic ``<prefix>/node/<node>`` per node and ``<prefix>/all``, QoS 1.

    * delivery: **at least once** while the broker keeps the node's session. A publish returns after the
      broker's PUBACK; each node has a persistent session (``session_expiry_s``), so QoS 1 frames published
      while it reconnects are queued by the broker and delivered after, possibly twice (duplicates are dropped
      by sequence number). Brokers cap that queue (Mosquitto ``max_queued_messages``, 1000 by default) and drop
      the rest: sequence numbers reveal it as a gap. A re-made connection is reported as a gap as well.
    * order: MQTT keeps a publisher's QoS 1 messages on one topic in order; a redelivery after a reconnect can
      come out of order, which the sequence check turns into a (harmless) resync.
    * targeting: one publish per target node (the payload is encoded once); envelopes for this node never
      leave the process.
    * failure: a publish never raises to the caller; unconfirmed publishes are followed by a gap notice. The
      first connection starts a clean session (envelopes for a previous incarnation are stale).
    * cost: a PUBACK round trip per publish, many in flight at once (``max_inflight``).
    """

    def __init__(self, config: MqttBusConfig, ctx: StrategyContext) -> None:
        super().__init__("mqtt", config, ctx)
        self._cfg = config
        self._client: aiomqtt.Client | None = None

    @property
    def _unreachable(self) -> str:
        return f"mqtt bus: cannot reach {self._cfg.host}:{self._cfg.port}"

    def _topic(self, stream: str) -> str:
        if stream == BROADCAST:
            return f"{self._cfg.prefix}/all"
        return f"{self._cfg.prefix}/node/{stream}"

    # ---------------------------------------------------------------- publishing
    def _send(self, frames: list[BusFrame]) -> Awaitable[None]:
        """Start the publishes now, in order (each task hands its frame to paho on its first step, and tasks
        start in creation order); wait for the PUBACKs."""
        client = self._client
        if client is None:
            return not_connected("mqtt bus is not connected")
        tasks = [
            asyncio.ensure_future(
                client.publish(
                    self._topic(f.stream),
                    self._framed.encode(f),
                    qos=self._cfg.qos,
                    timeout=self._cfg.publish_timeout_s,
                )
            )
            for f in frames
        ]
        return all_confirmed(tasks, "mqtt publish not acknowledged")

    # ---------------------------------------------------------------- connection and subscription
    def _new_client(self, node: str, clean_start: bool) -> aiomqtt.Client:
        cfg = self._cfg
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = cfg.session_expiry_s
        return aiomqtt.Client(
            cfg.host,
            cfg.port,
            username=cfg.username,
            password=cfg.password,
            identifier=f"wsim-{cfg.prefix}-{node}",
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=clean_start,
            properties=props,
            keepalive=cfg.keepalive_s,
            timeout=cfg.publish_timeout_s,
            max_inflight_messages=cfg.max_inflight,
        )

    async def _run(self, node: str, ready: asyncio.Future[None]) -> None:
        cfg = self._cfg
        attempt = 0
        first = True
        while not self._closing:
            client = self._new_client(node, clean_start=first)
            try:
                async with client:
                    topics: list[tuple[str, int]] = [
                        (self._topic(node), cfg.qos),
                        (self._topic(BROADCAST), cfg.qos),
                    ]
                    await client.subscribe(topics, timeout=cfg.publish_timeout_s)
                    first = False
                    attempt = 0
                    self._client = client
                    if not ready.done():
                        ready.set_result(None)
                    else:
                        await self._framed.resubscribed("session re-made after a disconnect")
                    async for message in client.messages:
                        payload = message.payload
                        if isinstance(payload, bytes | bytearray):
                            await self._framed.on_raw(bytes(payload))
                raise aiomqtt.MqttError("message stream ended")
            except asyncio.CancelledError:
                raise
            except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
                if not self._closing:
                    log.warning("mqtt bus connection of %s lost (%r); reconnecting", node, exc)
            finally:
                self._client = None
            delay = reconnect_delay_s(cfg, attempt)
            attempt += 1
            await asyncio.sleep(delay)
