from strategies._registry import Registry
from strategies.bus.base import Bus

REGISTRY: Registry[Bus] = Registry(
    "bus",
    {
        "local": "strategies.bus.local:LocalBus",
        "redis": "strategies.bus.redis:RedisBus",
        "rabbitmq": "strategies.bus.rabbitmq:RabbitmqBus",
        "mqtt": "strategies.bus.mqtt:MqttBus",
    },
    extras={"redis": "redis", "rabbitmq": "rabbitmq", "mqtt": "mqtt"},
)
