from strategies._registry import Registry
from strategies.context import StrategyContext
from strategies.dedup.base import Deduplicator
from strategies.dedup.config import DedupConfig

REGISTRY: Registry[Deduplicator, StrategyContext] = Registry("dedup", DedupConfig)
