from __future__ import annotations

import logging
from collections.abc import Collection

from strategies.bus.base import BusHandler, GapHandler
from strategies.bus.config import LocalBusConfig
from strategies.context import StrategyContext

log = logging.getLogger(__name__)


class LocalBus:
    """Single node: ``publish`` hands the envelope to this node's handler in the caller's task.

    Exactly once and in publish order, because nothing crosses a process boundary. It cannot reach another node,
    so a cluster needs a network bus.
    """

    def __init__(self, config: LocalBusConfig, ctx: StrategyContext) -> None:
        del config, ctx
        self._handler: BusHandler | None = None
        self._node = ""

    async def start(self, node: str, handler: BusHandler, on_gap: GapHandler) -> None:
        self._handler = handler
        self._node = node

    async def publish(self, payload: bytes, nodes: Collection[str] | None = None) -> None:
        if self._handler is None:
            raise RuntimeError("bus not started")
        if nodes is not None and self._node not in nodes:
            return  # addressed to other nodes: there are none
        try:
            await self._handler(payload)
        except Exception:
            log.exception("local bus handler failed")

    async def close(self) -> None:
        self._handler = None
