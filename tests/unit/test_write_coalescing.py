"""CoalescingTransport: the writes of one loop turn reach the socket as one write, in order."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from core.transport.coalesce import CoalescingTransport


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default


def wrap(real: RecordingTransport) -> CoalescingTransport:
    return CoalescingTransport(cast("asyncio.Transport", real), asyncio.get_running_loop())


async def test_one_turn_is_one_write_in_order() -> None:
    real = RecordingTransport()
    t = wrap(real)
    t.write(b"a")
    t.write(b"")
    t.write(b"bc")
    assert real.writes == []
    await asyncio.sleep(0)
    assert real.writes == [b"abc"]
    t.write(b"d")
    await asyncio.sleep(0)
    assert real.writes == [b"abc", b"d"]
    assert t.get_extra_info("peername") == ("127.0.0.1", 1)  # the rest is the real transport's


async def test_close_flushes_first_and_abort_drops() -> None:
    real = RecordingTransport()
    t = wrap(real)
    t.write(b"bye")
    t.close()
    assert real.writes == [b"bye"] and real.closed
    await asyncio.sleep(0)  # the scheduled flush finds nothing more
    assert real.writes == [b"bye"]

    real2 = RecordingTransport()
    t2 = wrap(real2)
    t2.write(b"lost")
    t2.abort()
    await asyncio.sleep(0)
    assert real2.writes == [] and real2.aborted
