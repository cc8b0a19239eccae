"""Presence: a user is online while any of their devices is connected (on any node). Friends are told when that
flips, once per change, not once per device."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from core.hub import DeviceLink
from core.protocol.codec import encode
from core.protocol.frames import PresenceFrame
from core.routing import Router
from core.services.social import SocialService
from strategies.presence.base import PresenceRegistry, PresenceUnavailable


@dataclass(eq=False)
class PresenceService:
    registry: PresenceRegistry
    social: SocialService
    router: Router
    node: str

    async def _announce(self, user: int, online: bool) -> None:
        friends = await self.social.presence_audience(user)
        if not friends:
            return
        try:
            devices = (await self.registry.online_devices([user])).get(user, 0)
        except PresenceUnavailable:
            devices = 1 if online else 0  # the flip itself is known; the exact count is not
        await self.router.deliver(
            friends, encode(PresenceFrame(user=str(user), online=online, devices=devices))
        )

    async def connected(self, link: DeviceLink) -> None:
        if await self.registry.device_online(link.user, link.device, self.node):
            await self._announce(link.user, True)

    async def disconnected(self, link: DeviceLink) -> None:
        if await self.registry.device_offline(link.user, link.device, self.node):
            await self._announce(link.user, False)

    async def changed(self, users: list[int], online: bool) -> None:
        """Flips the registry found outside a connect/disconnect (a dead node's lease ran out, or a node
        re-registered its devices after losing the registry): announced once, by the node that found them."""
        for user in users:
            await self._announce(user, online)

    async def heartbeat(self, link: DeviceLink) -> None:
        await self.registry.refresh(link.user, link.device, self.node)

    async def online(self, users: Iterable[int]) -> dict[int, int]:
        return await self.registry.online_devices(users)
