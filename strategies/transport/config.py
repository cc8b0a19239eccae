"""Which transports a node serves: ``strategies.transports`` is a list of these (the native WebSocket alone by
default). Paths are where the transport's routes are mounted."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from strategies._registry import StrategyConfig

PATH_PATTERN = r"^/[A-Za-z0-9_./-]{0,120}$"


class WebSocketTransportConfig(
    StrategyConfig, implementation="strategies.transport.websocket:NativeWebSocketTransport"
):
    """Native JSON over WebSocket (docs/protocol.md)."""

    kind: Literal["websocket"] = "websocket"
    path: Annotated[str, Field(pattern=PATH_PATTERN)] = "/ws"


class StompTransportConfig(StrategyConfig, implementation="strategies.transport.stomp:StompTransport"):
    """STOMP 1.2 over WebSocket, subprotocol ``v12.stomp``."""

    kind: Literal["stomp"] = "stomp"
    path: Annotated[str, Field(pattern=PATH_PATTERN)] = "/stomp"
    # Server heart-beat offer in ms (0: the node's heartbeat.interval_s). The client must send something at least
    # every max(its cx, this); the server reaps after heartbeat.missed_beats such intervals of silence.
    heart_beat_ms: Annotated[int, Field(ge=0)] = 0


class LongPollTransportConfig(
    StrategyConfig, implementation="strategies.transport.polling:LongPollTransport"
):
    """HTTP long polling: a poll is held until frames arrive or ``hold_s`` passes."""

    kind: Literal["long_poll"] = "long_poll"
    path: Annotated[str, Field(pattern=PATH_PATTERN)] = "/api/poll/long"
    # Must stay well under heartbeat.interval_s * missed_beats, or a quiet device would be reaped while it waits.
    hold_s: Annotated[float, Field(gt=0, le=120)] = 25.0
    max_frames_per_response: Annotated[int, Field(ge=1, le=10_000)] = 500


class ShortPollTransportConfig(
    StrategyConfig, implementation="strategies.transport.polling:ShortPollTransport"
):
    """HTTP short polling: every poll is answered at once (possibly empty); the client chooses the interval."""

    kind: Literal["short_poll"] = "short_poll"
    path: Annotated[str, Field(pattern=PATH_PATTERN)] = "/api/poll/short"
    max_frames_per_response: Annotated[int, Field(ge=1, le=10_000)] = 500


class MqttTransportConfig(
    StrategyConfig, implementation="strategies.transport.mqtt:MqttBridgeTransport", pip_extra="mqtt"
):
    """Devices on an MQTT broker; the node bridges their topics (aiomqtt, QoS 1). Enable on one node only."""

    kind: Literal["mqtt"] = "mqtt"
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    username: str | None = None
    password: str | None = None
    # Every topic lives under this prefix ("<prefix>/up/<credential>", "<prefix>/down/<tag>").
    topic_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")] = "wsim"
    # Bridge client id; a persistent session (clean_session false) so uplinks queued while the bridge restarts
    # are not lost. Default: "wsim-bridge-<node>".
    client_id: str | None = None
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    # Broker address told to devices by POST <credentials_path> (default: host/port above).
    public_host: str | None = None
    public_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    # Uplinks older or newer than this (by their timestamp) are refused; within it, replays are refused.
    replay_window_s: Annotated[float, Field(gt=0, le=3600)] = 120.0
    credentials_path: Annotated[str, Field(pattern=PATH_PATTERN)] = "/api/transports/mqtt/credentials"
    # "dynsec": the broker enforces accounts (Mosquitto's dynamic-security plugin, docker/mosquitto/): the bridge,
    # logged in as username/password, creates one broker account per device login that may subscribe to its own
    # downlink topic only, with the shared ``device_role`` (publish uplinks). "none": an open broker (anyone reads
    # everything; downlinks and uplinks stay authenticated by their MACs, but not confidential).
    provision: Literal["none", "dynsec"] = "none"
    device_role: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "wsim-device"


TransportConfig = Annotated[
    WebSocketTransportConfig
    | StompTransportConfig
    | LongPollTransportConfig
    | ShortPollTransportConfig
    | MqttTransportConfig,
    Field(discriminator="kind"),
]
