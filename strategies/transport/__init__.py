from strategies._registry import Registry
from strategies.transport.base import Transport

REGISTRY: Registry[Transport] = Registry(
    "transport",
    {
        "websocket": "strategies.transport.websocket:NativeWebSocketTransport",
        "stomp": "strategies.transport.stomp:StompTransport",
        "long_poll": "strategies.transport.polling:LongPollTransport",
        "short_poll": "strategies.transport.polling:ShortPollTransport",
        "mqtt": "strategies.transport.mqtt:MqttBridgeTransport",
    },
    {"mqtt": "mqtt"},
)
