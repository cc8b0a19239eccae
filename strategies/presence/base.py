"""Device-session registry and presence: which devices of a user are connected, and on which node.

Contract every implementation states and meets or weakens explicitly:

* A user is online while at least one device is registered (on any node).
* flips: ``device_online`` returns True only to the one call that took the user from no device to some device,
  and ``device_offline`` True only to the one call that took the user to none, even when several nodes register
  and unregister the same user's devices at once; a flip caused by a lease running out (a dead node) is reported
  once, through ``on_changed``, on one node of the cluster. So presence is pushed once per change, not per device
  and not per node.
* leases: a shared registry keeps entries alive by a lease its node renews; the entries of a node that dies or is
  partitioned away expire and are removed (reported through ``on_changed``). The in-memory registry lives and dies
  with its node.
* routing: ``nodes_of`` may name a node that has just died (its entries not yet expired) but never misses a
  node that registered a device before the call started: a message stored after a device registered is routed
  to its node.
* failure: writes do not raise when the shared store is unreachable; the registry re-asserts its node's devices
  when it is back (reporting through ``on_changed`` the users that this brings back online) and calls ``on_gap``
  so they resync (routes may have been missing meanwhile). Reads raise :class:`PresenceUnavailable` (the router
  then broadcasts).
* node ids: a shared registry leases each node a distinct snowflake node id (``lease_node_id``) and keeps it
  renewed; a registry without shared state returns None and the configured id is used.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from strategies.store.base import StoreUnavailable

GapHandler = Callable[[str], Awaitable[None]]  # this node's devices must resync (argument: a reason)
# These users' online state flipped (to ``online``) outside device_online/device_offline: a lease ran out, or
# the registry re-asserted its node's devices after losing the shared store.
ChangeHandler = Callable[[list[int], bool], Awaitable[None]]
NodeIdHandler = Callable[[int], None]  # the node id lease was lost and a new id leased


class PresenceUnavailable(StoreUnavailable):
    """The shared registry cannot be reached (callers fall back or answer 503)."""


class PresenceRegistry(Protocol):
    # True when the registry knows only this node's devices (it lives in the node's process): routing then needs
    # no lookup, every recipient is connected here or nowhere.
    node_local: bool

    async def device_online(self, user: int, device: str, node: str) -> bool:
        """Register a device; True if the user was offline before."""
        ...

    async def device_offline(self, user: int, device: str, node: str) -> bool:
        """Unregister a device; True if the user has no device left."""
        ...

    async def refresh(self, user: int, device: str, node: str) -> None:
        """The device showed it is alive (a heartbeat)."""
        ...

    async def online_devices(self, users: Iterable[int]) -> dict[int, int]:
        """Number of connected devices per user (users with none are omitted)."""
        ...

    async def nodes_of(self, users: Iterable[int]) -> dict[int, set[str]]:
        """Nodes holding each user's devices (users with none are omitted): the routing table of a cluster."""
        ...

    async def start(self, node: str, on_gap: GapHandler, on_changed: ChangeHandler) -> None: ...

    async def lease_node_id(self, id_count: int, on_change: NodeIdHandler) -> int | None:
        """Lease a node id in ``0..id_count-1`` unique in the cluster (None: no shared registry)."""
        ...

    async def close(self) -> None: ...
