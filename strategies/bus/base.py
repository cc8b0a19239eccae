"""Cross-node bus: carries routing envelopes (opaque bytes) from the node that stored a message to the nodes
that hold its recipients' devices.

Contract every implementation states and meets or weakens explicitly:

* delivery: at most once or at least once per envelope (see the implementation); the bus is never the source of
  truth. Durable messages live in the store; a node that may have missed envelopes is told through ``on_gap`` and
  asks its devices to resync from their cursors, so a bus gap never becomes a lost message.
* order: envelopes published by one node to one target node arrive in publish order (per-publisher FIFO) unless
  the implementation says otherwise; devices reorder by ``seq`` anyway.
* targeting: ``nodes=None`` reaches every node; otherwise only the named nodes (a node always receives what it
  addresses to itself).
* concurrency: ``publish`` may be called from many tasks at once; the handler is awaited for one envelope at a
  time per source.
* failure: ``publish`` does not raise when the broker is unreachable (the message is already stored and
  acknowledged): the envelopes it could not hand over become a gap at their target nodes. ``on_gap`` is called
  whenever the node may have missed envelopes (lost or re-made subscription, a sequence jump, a publisher's gap
  notice), after the node can receive again, so devices that resync then miss nothing. ``start`` returns once
  the node receives what is published from then on, and fails if the broker stays unreachable.

Network buses share the framing in :mod:`strategies.bus.endpoint` and :mod:`strategies.bus.framed`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Protocol

BusHandler = Callable[[bytes], Awaitable[None]]
GapHandler = Callable[[str], Awaitable[None]]  # argument: a short reason for logs and metrics


class Bus(Protocol):
    async def start(self, node: str, handler: BusHandler, on_gap: GapHandler) -> None: ...

    async def publish(self, payload: bytes, nodes: Collection[str] | None = None) -> None: ...

    async def close(self) -> None: ...
