from strategies._registry import Registry
from strategies.context import StrategyContext
from strategies.retry.base import RetryPolicy
from strategies.retry.config import RetryConfig

REGISTRY: Registry[RetryPolicy, StrategyContext] = Registry("retry", RetryConfig)
