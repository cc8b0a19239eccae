from __future__ import annotations

from collections.abc import Iterable

from strategies.context import StrategyContext
from strategies.presence.base import ChangeHandler, GapHandler, NodeIdHandler
from strategies.presence.config import MemoryPresenceConfig


class MemoryPresence:
    """Registry in this process: exact and immediate for a single node; other nodes cannot see it.

    Flips are exact (one event loop, no awaits inside an update). Nothing expires: the registry dies with its
    node, and so do the node's connections. No shared state, so no node id lease: the configured id is used.
    """

    node_local = True

    def __init__(self, config: MemoryPresenceConfig, ctx: StrategyContext) -> None:
        del config, ctx
        self._devices: dict[int, dict[str, str]] = {}

    async def device_online(self, user: int, device: str, node: str) -> bool:
        devices = self._devices.setdefault(user, {})
        was_offline = not devices
        devices[device] = node
        return was_offline

    async def device_offline(self, user: int, device: str, node: str) -> bool:
        devices = self._devices.get(user)
        if not devices or devices.get(device) != node:
            return False
        del devices[device]
        if devices:
            return False
        del self._devices[user]
        return True

    async def refresh(self, user: int, device: str, node: str) -> None:
        return None

    async def online_devices(self, users: Iterable[int]) -> dict[int, int]:
        return {u: len(d) for u in users if (d := self._devices.get(u))}

    async def nodes_of(self, users: Iterable[int]) -> dict[int, set[str]]:
        return {u: set(d.values()) for u in users if (d := self._devices.get(u))}

    async def start(self, node: str, on_gap: GapHandler, on_changed: ChangeHandler) -> None:
        return None

    async def lease_node_id(self, id_count: int, on_change: NodeIdHandler) -> int | None:
        return None

    async def close(self) -> None:
        self._devices.clear()
