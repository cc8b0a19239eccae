from strategies._registry import Registry
from strategies.ack.base import AckPolicy

REGISTRY: Registry[AckPolicy] = Registry(
    "ack",
    {
        "three_state": "strategies.ack.policies:ThreeStateAck",
        "off": "strategies.ack.policies:AckOff",
    },
)
