from strategies._registry import Registry
from strategies.timeline.base import Timeline, TimelineContext
from strategies.timeline.config import TimelineConfig

REGISTRY: Registry[Timeline, TimelineContext] = Registry("store.timeline", TimelineConfig)
