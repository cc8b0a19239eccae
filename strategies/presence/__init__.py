from strategies._registry import Registry
from strategies.context import StrategyContext
from strategies.presence.base import PresenceRegistry
from strategies.presence.config import PresenceConfig

REGISTRY: Registry[PresenceRegistry, StrategyContext] = Registry("presence", PresenceConfig)
