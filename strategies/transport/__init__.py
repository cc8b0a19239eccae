from __future__ import annotations

from typing import TYPE_CHECKING

from strategies._registry import Registry
from strategies.transport.base import Transport
from strategies.transport.config import TransportConfig

if TYPE_CHECKING:
    from core.node import Node

# A transport is built with the node it serves devices for (its context).
REGISTRY: Registry[Transport, Node] = Registry("transport", TransportConfig)
