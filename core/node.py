"""Everything one running node holds, built by the composition root (core/app.py) and shared by transports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from core.clock import Clock
from core.config import Settings
from core.gcpolicy import ConnectionFreezer
from core.hub import Hub
from core.metrics import Metrics
from core.routing import Router
from core.services.accounts import AccountService
from core.services.files import FileService
from core.services.messaging import MessagingService
from core.services.presence import PresenceService
from core.services.social import SocialService
from core.sweeper import Sweeper
from core.transport.guard import AddressSlots
from strategies.ack.base import AckPolicy
from strategies.bus.base import Bus
from strategies.cache.base import Cache
from strategies.dedup.base import Deduplicator
from strategies.files.base import FileStorage
from strategies.ids.base import IdGenerator
from strategies.presence.base import PresenceRegistry
from strategies.retry.base import RetryPolicy
from strategies.store.base import MessageStore, UserStore


@dataclass
class Node:
    settings: Settings
    clock: Clock
    metrics: Metrics
    ids: IdGenerator
    users_store: UserStore
    messages_store: MessageStore
    cache: Cache
    dedup: Deduplicator
    bus: Bus
    presence_registry: PresenceRegistry
    file_storage: FileStorage
    ack: AckPolicy
    retry: RetryPolicy
    hub: Hub
    router: Router
    accounts: AccountService
    social: SocialService
    messaging: MessagingService
    presence: PresenceService
    files: FileService
    # Open sockets per client address, shared by every WebSocket transport's handshake gate.
    address_slots: AddressSlots
    sweeper: Sweeper
    # The JWT signing key, read once by the composition root; transports that derive keys from it get it passed.
    secret: bytes = field(repr=False)
    started: bool = field(default=False)
    # The gc callback that records pauses (removed when the node stops: tests run many nodes in one process).
    gc_callback: Callable[[str, dict[str, int]], None] | None = field(default=None)
    gc_freezer: ConnectionFreezer | None = field(default=None)

    @property
    def name(self) -> str:
        return self.settings.server.node
