"""This node's connected devices, and local fan-out of routed envelopes.

Transports register a :class:`DeviceLink` per authenticated connection. ``push`` never blocks: each link queues
the frame and writes it from its own writer, so one slow device cannot stall a fan-out; a link whose queue
overflows closes itself as a slow consumer (the device resyncs on reconnect, nothing is lost).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol, assert_never

from core.clock import Clock
from core.errors import CloseCode
from core.faultpoints import NO_FAULTS, FaultPoints
from core.metrics import Metrics
from core.models import Track
from core.routing import CloseSessions, Deliver, Resync, decode_envelope

log = logging.getLogger(__name__)


class DeviceLink(Protocol):
    @property
    def user(self) -> int: ...

    @property
    def device(self) -> str: ...

    @property
    def family(self) -> str:
        """The login session (refresh-token family) that authenticated this connection."""
        ...

    @property
    def transport(self) -> str: ...

    def push(self, frame: str, track: Track | None = None, ts_ms: int | None = None) -> None:
        """Queue an encoded frame; ``track`` registers it with the delivery tracker."""
        ...

    def close(self, code: CloseCode, reason: str) -> None:
        """Close soon (non-blocking)."""
        ...

    def request_sync(self, reason: str) -> None:
        """Ask the device to sync from its cursors (a routing gap may have lost pushes)."""
        ...

    @property
    def held(self) -> Mapping[str, int]:
        """Per conversation, the highest seq this device is known to hold (for the sweeper, core/sweeper.py)."""
        ...

    @property
    def opened_ms(self) -> int:
        """Wall time the device connected: what was stored before came with its first sync."""
        ...

    def note_held(self, conv: str, seq: int) -> None:
        """Record that the device holds ``conv`` up to ``seq``."""
        ...


class TooManyConnectionsError(Exception):
    pass


@dataclass(eq=False)
class Hub:
    node: str
    clock: Clock
    metrics: Metrics
    max_per_user: int
    resync_spread_s: float = 2.0
    faults: FaultPoints = NO_FAULTS

    def __post_init__(self) -> None:
        self._links: dict[int, dict[str, DeviceLink]] = {}
        self._count = 0

    # ---------------------------------------------------------------- registry
    def register(self, link: DeviceLink) -> DeviceLink | None:
        """Add a link; returns the older link of the same device, which the caller closes as replaced."""
        devices = self._links.setdefault(link.user, {})
        old = devices.get(link.device)
        if old is None and len(devices) >= self.max_per_user:
            raise TooManyConnectionsError(f"user already has {len(devices)} connections")
        devices[link.device] = link
        if old is None:
            self._count += 1
        return old

    def unregister(self, link: DeviceLink) -> bool:
        """Remove the link if it is still the registered one for its device; True if removed."""
        devices = self._links.get(link.user)
        if not devices or devices.get(link.device) is not link:
            return False
        del devices[link.device]
        self._count -= 1
        if not devices:
            del self._links[link.user]
        return True

    def links(self, user: int) -> list[DeviceLink]:
        return list(self._links.get(user, {}).values())

    def all_links(self) -> Iterator[DeviceLink]:
        for devices in list(self._links.values()):
            yield from list(devices.values())

    def is_current(self, link: DeviceLink) -> bool:
        return self._links.get(link.user, {}).get(link.device) is link

    @property
    def connection_count(self) -> int:
        return self._count

    def local_users(self) -> list[int]:
        return list(self._links)

    # ---------------------------------------------------------------- bus input
    async def on_envelope(self, payload: bytes) -> None:
        self.metrics.bus_received.inc()
        env = decode_envelope(payload)
        if isinstance(env, Deliver):
            if env.origin is None or env.origin != self.node:  # ours: the router delivered it here already
                self.deliver(env)
        elif isinstance(env, CloseSessions):
            for link in self.links(env.user):
                if env.family is None or link.family == env.family:
                    link.close(CloseCode(env.code), env.reason)
        elif isinstance(env, Resync):
            targets = env.users or tuple(self._links)
            self._request_syncs([link for user in targets for link in self.links(user)], env.reason)
        else:
            assert_never(env)

    def deliver(self, env: Deliver) -> None:
        links = self._links
        faults = self.faults
        track = env.track
        for user in env.users:
            devices = links.get(user)
            if not devices:
                continue
            for device, link in list(devices.items()):
                if user == env.exclude_user and device == env.exclude_device:
                    continue
                link.push(env.frame, track, env.ts_ms)
                if track is not None:
                    faults.reached("mid_fanout", track, user)

    async def on_bus_gap(self, reason: str) -> None:
        """The bus may have dropped envelopes for this node: every local device resyncs from its cursors."""
        log.warning("bus gap on %s (%s): asking %d devices to resync", self.node, reason, self._count)
        self._request_syncs(list(self.all_links()), reason)

    def _request_syncs(self, links: list[DeviceLink], reason: str) -> None:
        """Ask many devices to sync, spread over ``resync_spread_s`` so 19k syncs do not hit the store at once.
        A few devices are asked at once: the spread only matters for storms."""
        if len(links) <= 100 or self.resync_spread_s <= 0:
            for link in links:
                link.request_sync(reason)
            return
        for link in links:
            self.clock.call_later(random.uniform(0, self.resync_spread_s), link.request_sync, reason)
