"""Per-connection memory bounds of a device link, without a socket: the outbound queue (slow consumer, 4008)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from core.app import build_node
from core.clock import FakeClock
from core.errors import CloseCode
from core.models import Track
from core.transport.link import SessionLink
from tests.support.server import settings_for_test


class StuckWire(SessionLink):
    """A device that never reads: nothing is ever written (the writer is not even started)."""

    async def _write(self, frame: str, track: Track | None) -> bool:
        raise AssertionError("never written")

    async def _close_wire(self, code: CloseCode, reason: str) -> None:
        return None


def test_a_device_that_does_not_read_is_closed_4008_at_the_queue_bound(tmp_path: Path) -> None:
    node = build_node(settings_for_test(tmp_path, {"limits": {"outbound_queue_frames": 50}}))
    link = StuckWire(node)
    for i in range(50):
        link.push(f'{{"type":"pong","ts":{i}}}')
    assert not link.closing()
    link.push('{"type":"pong"}')
    assert link.closing() and link.session.close_code == CloseCode.SLOW_CONSUMER
    assert len(link._queue) == 0  # queued frames are dropped: the device resyncs from the store
    link.push('{"type":"pong"}')
    assert len(link._queue) == 0  # nothing more is queued for a closing link


async def test_retry_timer_runs_on_the_nodes_clock_and_waits_for_inbound_frames(tmp_path: Path) -> None:
    """The link's deadlines are clock timers: advancing a fake clock fires them; while the device's own frames
    are being processed a due push waits once more instead of being pushed again."""
    clock = FakeClock()
    node = build_node(settings_for_test(tmp_path), clock=clock)
    link = StuckWire(node)
    link.session.opened(clock.monotonic() + 3600, clock.monotonic())
    frame = '{"type":"message.new"}'
    link._observe_written(frame, Track(1, "d:1:2", 1), None)  # tracked; initial wait 1 s (adaptive)
    link._inbound = 1  # the device's frames are being processed when the deadline comes
    clock.advance(1.0)
    await asyncio.sleep(0)
    assert list(link._queue) == []
    link._inbound = 0
    clock.advance(1.0)  # the extended deadline: pushed again
    await asyncio.sleep(0)
    assert [item[0] for item in link._queue] == [frame]
