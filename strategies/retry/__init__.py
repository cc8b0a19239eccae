from strategies._registry import Registry
from strategies.retry.base import RetryPolicy

REGISTRY: Registry[RetryPolicy] = Registry(
    "retry",
    {
        "none": "strategies.retry.policies:NoRetry",
        "fixed": "strategies.retry.policies:FixedRetry",
        "exponential": "strategies.retry.policies:ExponentialRetry",
        "adaptive": "strategies.retry.policies:AdaptiveRetry",
    },
)
