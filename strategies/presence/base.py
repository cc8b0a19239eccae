"""Device-session registry and presence: which devices of a user are connected, and on which node.

A user is online while at least one device is registered. Entries carry a lease that heartbeats refresh, so a node
that dies without unregistering its devices stops counting them once the lease runs out (shared registries); the
in-memory registry lives and dies with its node. Returns tell the caller when a user's online state flips, so
presence is pushed once per change, not per device.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class PresenceRegistry(Protocol):
    async def device_online(self, user: int, device: str, node: str) -> bool:
        """Register a device; True if the user was offline before."""
        ...

    async def device_offline(self, user: int, device: str, node: str) -> bool:
        """Unregister a device; True if the user has no device left."""
        ...

    async def refresh(self, user: int, device: str, node: str) -> None:
        """Extend the device's lease (called on heartbeats)."""
        ...

    async def online_devices(self, users: Iterable[int]) -> dict[int, int]:
        """Number of connected devices per user (users with none are omitted)."""
        ...

    async def nodes_of(self, users: Iterable[int]) -> dict[int, set[str]]:
        """Nodes holding each user's devices (users with none are omitted): the routing table of a cluster."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...
