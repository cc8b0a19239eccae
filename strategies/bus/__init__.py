from strategies._registry import Registry
from strategies.bus.base import Bus
from strategies.bus.config import BusConfig
from strategies.context import StrategyContext

REGISTRY: Registry[Bus, StrategyContext] = Registry("bus", BusConfig)
