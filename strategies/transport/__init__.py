from strategies._registry import Registry
from strategies.transport.base import NodePort, Transport
from strategies.transport.config import TransportConfig

# A transport is built with the port of the node it serves devices for (its context).
REGISTRY: Registry[Transport, NodePort] = Registry("transport", TransportConfig)
