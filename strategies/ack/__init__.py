from strategies._registry import Registry
from strategies.ack.base import AckPolicy
from strategies.ack.config import AckConfig
from strategies.context import StrategyContext

REGISTRY: Registry[AckPolicy, StrategyContext] = Registry("ack", AckConfig)
