from strategies._registry import Registry
from strategies.cache.base import Cache
from strategies.cache.config import CacheConfig
from strategies.context import StrategyContext

REGISTRY: Registry[Cache, StrategyContext] = Registry("cache", CacheConfig)
