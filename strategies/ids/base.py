"""Globally unique, roughly time-ordered 64-bit ids (messages, users, groups, files).

Pure: ``next_id`` takes the wall clock reading. Ids from one generator strictly increase, even when the wall
clock steps backwards; ids from generators with different node ids never collide.
"""

from __future__ import annotations

from typing import Protocol


class IdGenerator(Protocol):
    @property
    def node_id(self) -> int: ...

    @property
    def node_id_count(self) -> int:
        """How many distinct node ids exist (a cluster leases one per node)."""
        ...

    def set_node_id(self, node_id: int) -> None:
        """Adopt a leased node id (at start-up, or when a lost lease was replaced by another id)."""
        ...

    def next_id(self, now_ms: int) -> int: ...
