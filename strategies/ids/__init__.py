from strategies._registry import Registry
from strategies.context import StrategyContext
from strategies.ids.base import IdGenerator
from strategies.ids.config import IdsConfig

REGISTRY: Registry[IdGenerator, StrategyContext] = Registry("ids", IdsConfig)
