"""The node freezes the collector's heap as real connections open and collects generation 0 as they close."""

from __future__ import annotations

import asyncio
import gc

from core.sdk.client import WsimClient
from tests.conftest import ServerFactory, unique_name


async def test_connections_drive_the_freezer(start_server: ServerFactory) -> None:
    thresholds = gc.get_threshold()
    # the clock's tick (every 0.1 s by default) may also freeze once generation 1 is due: here it stays out of it
    overrides = {"gc_tuning": True, "gc_freeze_every_connections": 2, "gc_young_interval_s": 60}
    server = await start_server({"server": overrides})
    try:
        freezer = server.node.gc_freezer
        assert freezer is not None
        clients = [WsimClient(server.url) for _ in range(4)]
        for c in clients:
            await c.register(unique_name(), "password-123", "Gc")
            await c.connect()
        assert freezer.freezes == 2  # one per 2 connections opened
        for c in clients:
            await c.close()
        async with asyncio.timeout(10):
            while freezer.collections < 2:  # the server notices each close on its own time
                await asyncio.sleep(0.01)
        assert freezer.freezes == 2  # closing freezes nothing
    finally:
        gc.unfreeze()  # give the test process's heap back to the collector
        gc.set_threshold(*thresholds)
