from __future__ import annotations

from dataclasses import dataclass, field

from core.clock import FakeClock, SystemClock
from core.errors import CloseCode
from core.hub import Hub
from core.metrics import Metrics
from core.models import Track


@dataclass
class FakeLink:
    user: int
    device: str
    family: str = "f"
    transport: str = "fake"
    syncs: list[str] = field(default_factory=list)
    held: dict[str, int] = field(default_factory=dict)
    opened_ms: int = 0

    def note_held(self, conv: str, seq: int) -> None:
        self.held[conv] = max(seq, self.held.get(conv, 0))

    def push(self, frame: str, track: Track | None = None, ts_ms: int | None = None) -> None:
        pass

    def close(self, code: CloseCode, reason: str) -> None:
        pass

    def request_sync(self, reason: str) -> None:
        self.syncs.append(reason)


async def test_a_bus_gap_resync_is_spread_then_complete() -> None:
    clock = FakeClock()
    hub = Hub("n1", clock, Metrics(), max_per_user=10, resync_spread_s=0.3)
    links = [FakeLink(u, "d") for u in range(1, 301)]
    for link in links:
        hub.register(link)
    await hub.on_bus_gap("test")
    assert sum(len(link.syncs) for link in links) == 0  # not at once: spread on the clock's timers
    clock.advance(0.15)
    assert 0 < sum(len(link.syncs) for link in links) < len(links)
    clock.advance(0.15)
    assert all(link.syncs == ["test"] for link in links)  # each exactly once, within the spread


async def test_few_devices_resync_at_once() -> None:
    hub = Hub("n1", SystemClock(), Metrics(), max_per_user=10, resync_spread_s=5.0)
    links = [FakeLink(u, "d") for u in range(1, 4)]
    for link in links:
        hub.register(link)
    await hub.on_bus_gap("small")
    assert all(link.syncs == ["small"] for link in links)
