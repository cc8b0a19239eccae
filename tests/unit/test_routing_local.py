"""The router hands local recipients the Deliver object directly; only other nodes get a bus envelope."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from core.clock import FakeClock
from core.hub import Hub
from core.metrics import Metrics
from core.models import Track
from core.routing import Deliver, Router, decode_envelope, encode_envelope
from strategies.presence.base import PresenceUnavailable
from tests.unit.test_hub import FakeLink


class RecordingBus:
    def __init__(self) -> None:
        self.published: list[tuple[bytes, Collection[str] | None]] = []

    async def publish(self, payload: bytes, nodes: Collection[str] | None = None) -> None:
        self.published.append((payload, None if nodes is None else sorted(nodes)))


class Presence:
    node_local = False  # a shared registry: the router asks it where recipients are

    def __init__(self, routes: dict[int, set[str]] | None) -> None:
        self.routes = routes

    async def nodes_of(self, users: Iterable[int]) -> dict[int, set[str]]:
        if self.routes is None:
            raise PresenceUnavailable("down")
        return {u: self.routes[u] for u in users if u in self.routes}


def router(routes: dict[int, set[str]] | None) -> tuple[Router, RecordingBus, list[Deliver]]:
    bus = RecordingBus()
    local: list[Deliver] = []
    r = Router(bus, Presence(routes), Metrics(), "n1", local.append)  # type: ignore[arg-type]
    return r, bus, local


async def test_local_recipients_skip_the_bus() -> None:
    r, bus, local = router({1: {"n1"}, 2: {"n1"}})
    await r.deliver([1, 2], "frame", track=Track(7, "c", 3))
    assert [d.frame for d in local] == ["frame"] and local[0].track == Track(7, "c", 3)
    assert bus.published == []


async def test_remote_nodes_still_get_the_envelope() -> None:
    r, bus, local = router({1: {"n1"}, 2: {"n2", "n3"}})
    await r.deliver([1, 2], "frame")
    assert len(local) == 1
    [(payload, nodes)] = bus.published
    assert nodes == ["n2", "n3"] and decode_envelope(payload) == local[0]


async def test_a_broadcast_is_delivered_here_once() -> None:
    r, bus, local = router(None)  # no routing table: broadcast
    await r.deliver([1], "frame")
    assert len(local) == 1 and local[0].origin == "n1"
    [(payload, nodes)] = bus.published
    assert nodes is None
    hub = Hub("n1", FakeClock(), Metrics(), max_per_user=5)
    pushed: list[str] = []
    link = FakeLink(1, "d")
    link.push = lambda frame, track=None, ts_ms=None: pushed.append(frame)  # type: ignore[method-assign]
    hub.register(link)
    await hub.on_envelope(payload)  # our own broadcast coming back: already delivered
    assert pushed == []
    await hub.on_envelope(encode_envelope(Deliver((1,), "other", origin="n2")))
    assert pushed == ["other"]


async def test_a_node_local_registry_is_not_asked_where_recipients_are() -> None:
    from strategies.presence.memory import MemoryPresence

    presence = MemoryPresence()
    asked: list[object] = []

    async def nodes_of(users: Iterable[int]) -> dict[int, set[str]]:
        asked.append(users)
        return {}

    presence.nodes_of = nodes_of  # type: ignore[method-assign]
    bus, local = RecordingBus(), []
    r = Router(bus, presence, Metrics(), "n1", local.append)  # type: ignore[arg-type]
    await r.deliver([1, 2], "frame", exclude_user=1, exclude_device="d", track=Track(7, "c", 3))
    assert asked == [] and bus.published == []
    assert local == [Deliver((1, 2), "frame", 1, "d", Track(7, "c", 3), None)]
    # Without direct local delivery (no hub given), the registry routes as before.
    await Router(bus, presence, Metrics()).deliver([1], "frame")  # type: ignore[arg-type]
    assert len(asked) == 1
