from strategies._registry import Registry
from strategies.dedup.base import Deduplicator

REGISTRY: Registry[Deduplicator] = Registry(
    "dedup",
    {
        "off": "strategies.dedup.off:DedupOff",
        "memory": "strategies.dedup.memory:MemoryDeduplicator",
        "redis": "strategies.dedup.redis:RedisDeduplicator",
    },
    extras={"redis": "redis"},
)
