from strategies._registry import Registry
from strategies.presence.base import PresenceRegistry

REGISTRY: Registry[PresenceRegistry] = Registry(
    "presence",
    {
        "memory": "strategies.presence.memory:MemoryPresence",
        "redis": "strategies.presence.redis:RedisPresence",
    },
    extras={"redis": "redis"},
)
