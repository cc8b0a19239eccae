from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, SerializationInfo, field_serializer

from strategies._registry import StrategyConfig

# Names that end up in channel, exchange, queue and topic names: no separators or wildcards.
Prefix = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class LocalBusConfig(StrategyConfig, implementation="strategies.bus.local:LocalBus"):
    """One process: every device is on this node, nothing crosses a network."""

    kind: Literal["local"] = "local"


class _NetworkBusConfig(StrategyConfig):
    # Every channel / exchange / queue / topic name starts with this (one cluster per prefix on a broker).
    prefix: Prefix = "wsim"
    # After a publish the broker did not take, the target nodes are sent a gap notice; retried this often.
    gap_retry_s: Annotated[float, Field(gt=0)] = 0.5
    # Reconnect backoff after losing the broker (full jitter, doubling up to the cap).
    reconnect_min_s: Annotated[float, Field(gt=0)] = 0.1
    reconnect_max_s: Annotated[float, Field(gt=0)] = 5.0
    # A publish that takes longer than this counts as failed (its nodes get a gap notice).
    publish_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    # start() fails when the broker cannot be reached for this long (an orchestrator restarts the node).
    start_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    # Secret shared by every node of the cluster: each bus frame carries a MAC under it, and frames that do not
    # verify are dropped (anyone who reaches the broker could otherwise inject envelopes). Empty: generated once
    # into <data_dir>/bus.key, which suits nodes sharing a data directory (wsim cluster, the Compose stack).
    # Masked when the configuration is printed (wsim config) or written to a report.
    cluster_key: Annotated[SecretStr, Field(min_length=16)] | None = None

    @field_serializer("cluster_key", when_used="json")
    def _dump_key(self, value: SecretStr | None, info: SerializationInfo) -> str | None:
        """The key itself (child nodes get their configuration as a file), masked when the dump is for people."""
        if value is None:
            return None
        if isinstance(info.context, dict) and info.context.get("mask_secrets"):
            return "**********"
        return value.get_secret_value()


class RedisBusConfig(_NetworkBusConfig, implementation="strategies.bus.redis:RedisBus", pip_extra="redis"):
    """Redis pub/sub: one channel per node plus one broadcast channel."""

    kind: Literal["redis"] = "redis"
    url: str = "redis://127.0.0.1:6379/0"
    # The subscriber pings when idle this often, so a silently dead link is noticed (and reported as a gap).
    health_check_s: Annotated[float, Field(gt=0)] = 5.0


class RabbitmqBusConfig(
    _NetworkBusConfig, implementation="strategies.bus.rabbitmq:RabbitmqBus", pip_extra="rabbitmq"
):
    """RabbitMQ through aio-pika: a direct exchange, one durable queue per node, publisher confirms."""

    kind: Literal["rabbitmq"] = "rabbitmq"
    url: str = "amqp://guest:guest@127.0.0.1:5672/"
    # "quorum" replicates each node's queue across a RabbitMQ cluster (Raft); "classic" is one broker's queue.
    queue_type: Literal["classic", "quorum"] = "classic"
    # A node queue nobody consumed for this long is deleted by the broker (a node that died for good).
    queue_expires_s: Annotated[float, Field(ge=1)] = 60.0
    # Envelopes the broker sends ahead of acks to this node's consumer.
    prefetch: Annotated[int, Field(ge=1, le=65535)] = 512
    # Persistent messages survive a broker restart (classic queues write them to disk): slower; the store is the
    # truth anyway, so the default keeps them in memory and a broker restart is a gap like any other.
    persistent: bool = False
    heartbeat_s: Annotated[int, Field(ge=0)] = 10


class MqttBusConfig(_NetworkBusConfig, implementation="strategies.bus.mqtt:MqttBus", pip_extra="mqtt"):
    """MQTT 5 through aiomqtt (Mosquitto, EMQX, HiveMQ...): QoS 1, a persistent session per node."""

    kind: Literal["mqtt"] = "mqtt"
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    username: str | None = None
    password: str | None = None
    qos: Literal[1, 2] = 1
    # The broker keeps a node's session (subscriptions and queued QoS 1 messages) this long after it drops.
    session_expiry_s: Annotated[int, Field(ge=0)] = 60
    keepalive_s: Annotated[int, Field(ge=1)] = 10
    # QoS 1 messages in flight (sent, not yet acknowledged) per connection.
    max_inflight: Annotated[int, Field(ge=1, le=65535)] = 1000


BusConfig = Annotated[
    LocalBusConfig | RedisBusConfig | RabbitmqBusConfig | MqttBusConfig, Field(discriminator="kind")
]
