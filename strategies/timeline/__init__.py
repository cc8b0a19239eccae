from strategies._registry import Registry
from strategies.timeline.base import Timeline

REGISTRY: Registry[Timeline] = Registry(
    "store.timeline",
    {
        "read": "strategies.timeline.read:ReadTimeline",
        "write": "strategies.timeline.write:WriteTimeline",
    },
)
