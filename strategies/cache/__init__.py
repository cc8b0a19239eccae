from strategies._registry import Registry
from strategies.cache.base import Cache

REGISTRY: Registry[Cache] = Registry(
    "cache",
    {
        "off": "strategies.cache.off:CacheOff",
        "l1": "strategies.cache.l1:L1Cache",
        "l2": "strategies.cache.redis:RedisCache",
        "l1+l2": "strategies.cache.tiered:TwoTierCache",
    },
    extras={"l2": "redis", "l1+l2": "redis"},
)
