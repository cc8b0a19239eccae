from strategies._registry import Registry
from strategies.bus.base import Bus

REGISTRY: Registry[Bus] = Registry("bus", {"local": "strategies.bus.local:LocalBus"})
