"""De-duplication of resent messages (same sender, device and client message id).

Two layers, both chosen by the strategy:

* ``durable_key`` names the idempotency key the message store enforces with a unique index. With a key, a resend
  can never be stored twice, however late it comes; ``None`` (the ``off`` arm) stores every resend as a new
  message, which is what an IM system without de-duplication does.
* ``lookup``/``remember`` form a fast window (5 minutes by default) that answers a resend with the original ack
  without touching the store or allocating a sequence number.

Concurrency: two copies of one message racing on one node are coalesced by the messaging service; racing on two
nodes they meet at the store's unique index. ``remember`` happens only after the durable write, so the window
never answers for a message that is not stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class DedupRecord:
    msg_id: int
    conv: str
    seq: int
    ts_ms: int
    fingerprint: str  # hash of (conv, kind, body): a resend with a different body is a conflict


class Deduplicator(Protocol):
    def durable_key(self, sender: int, device: str, cmid: str) -> str | None: ...

    async def lookup(self, key: str) -> DedupRecord | None: ...

    async def remember(self, key: str, record: DedupRecord) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...
