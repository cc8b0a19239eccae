"""Routing envelopes carried by the bus, and the router that addresses them to the nodes holding recipients.

An envelope carries an already encoded frame: a group message is encoded once, not once per recipient or per
node. The router asks the presence registry which nodes hold the recipients' devices and publishes only to those
nodes (nobody online: nothing is published; the store keeps the message for sync). When the registry cannot be
read the envelope is broadcast instead: dearer, never lost.

Recipients on this node never go through the bus: the router hands the :class:`Deliver` object to the local hub
directly (no encode, no decode, in the caller's task, so in call order), and publishes only to the other nodes
that hold recipients. A broadcast carries its origin, and the origin node drops its own copy when the bus brings
it back (it already delivered it locally).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

import orjson

from core.metrics import Metrics
from core.models import Track
from strategies.bus.base import Bus
from strategies.presence.base import PresenceRegistry, PresenceUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Deliver:
    users: tuple[int, ...]
    frame: str
    # The device that sent the message already has it (from its ack): skip it, but not the sender's other devices.
    exclude_user: int | None = None
    exclude_device: str | None = None
    track: Track | None = None
    ts_ms: int | None = None  # when the message was stored: for the send->deliver latency histogram
    origin: str | None = None  # set on broadcasts: the node that already delivered it to its own devices


@dataclass(frozen=True, slots=True)
class CloseSessions:
    user: int
    family: str | None  # None: every session of the user
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Resync:
    """Tell these users' devices (or every device when empty) to sync: a node may have missed envelopes."""

    users: tuple[int, ...]
    reason: str


Envelope = Deliver | CloseSessions | Resync


def encode_envelope(env: Envelope) -> bytes:
    if isinstance(env, Deliver):
        t = env.track
        return orjson.dumps(
            {
                "k": "d",
                "u": env.users,
                "f": env.frame,
                "xu": env.exclude_user,
                "xd": env.exclude_device,
                "t": None if t is None else [t.msg_id, t.conv, t.seq],
                "ts": env.ts_ms,
                "o": env.origin,
            }
        )
    if isinstance(env, CloseSessions):
        return orjson.dumps({"k": "c", "u": env.user, "fam": env.family, "code": env.code, "r": env.reason})
    return orjson.dumps({"k": "r", "u": env.users, "r": env.reason})


def decode_envelope(data: bytes) -> Envelope:
    obj = orjson.loads(data)
    kind = obj["k"]
    if kind == "d":
        t = obj["t"]
        return Deliver(
            tuple(obj["u"]),
            obj["f"],
            obj["xu"],
            obj["xd"],
            None if t is None else Track(t[0], t[1], t[2]),
            obj.get("ts"),
            obj.get("o"),
        )
    if kind == "c":
        return CloseSessions(obj["u"], obj["fam"], obj["code"], obj["r"])
    if kind == "r":
        return Resync(tuple(obj["u"]), obj["r"])
    raise ValueError(f"unknown envelope kind {kind!r}")


class Router:
    def __init__(
        self,
        bus: Bus,
        presence: PresenceRegistry,
        metrics: Metrics,
        node: str | None = None,
        local: Callable[[Deliver], None] | None = None,
    ) -> None:
        """``node`` and ``local`` (the hub's ``deliver``): this node's name and its direct delivery; without
        them every envelope, this node's included, goes through the bus."""
        self._bus = bus
        self._presence = presence
        self._metrics = metrics
        self._node = node if local is not None else None
        self._local = local
        # A node-local registry routes every recipient here (or nowhere): skip the per-message lookup.
        self._here_only = local is not None and presence.node_local

    async def deliver(
        self,
        users: Iterable[int],
        frame: str,
        *,
        exclude_user: int | None = None,
        exclude_device: str | None = None,
        track: Track | None = None,
        ts_ms: int | None = None,
    ) -> None:
        if self._here_only:  # the hub skips recipients with no device here
            self._deliver_here(Deliver(tuple(users), frame, exclude_user, exclude_device, track, ts_ms))
            return
        try:
            routes = await self._presence.nodes_of(users)
        except PresenceUnavailable:
            # No routing table: every node gets the envelope and delivers to whichever recipients it holds.
            env = Deliver(tuple(users), frame, exclude_user, exclude_device, track, ts_ms, self._node)
            self._deliver_here(env)
            await self._publish(env, None)
            return
        if not routes:
            return
        nodes: set[str] = set()
        for n in routes.values():
            nodes |= n
        env = Deliver(tuple(routes), frame, exclude_user, exclude_device, track, ts_ms)
        if self._node is not None and self._node in nodes:
            self._deliver_here(env)
            if len(nodes) == 1:
                return
            nodes.discard(self._node)
        await self._publish(env, nodes)

    def _deliver_here(self, env: Deliver) -> None:
        if self._local is None:
            return
        try:
            self._local(env)
        except Exception:  # as a bus handler's failure: logged, never the sender's error
            log.exception("local delivery failed")

    async def close_sessions(self, user: int, family: str | None, code: int, reason: str) -> None:
        # Broadcast: a session's sockets may be on any node, including ones whose registry entry expired.
        await self._publish(CloseSessions(user, family, code, reason), None)

    async def resync(self, users: tuple[int, ...], reason: str) -> None:
        await self._publish(Resync(users, reason), None)

    async def _publish(self, env: Envelope, nodes: Collection[str] | None) -> None:
        self._metrics.bus_published.inc()
        await self._bus.publish(encode_envelope(env), nodes)
