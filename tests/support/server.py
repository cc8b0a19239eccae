"""Run a real wsim node (uvicorn, real sockets) on a free port inside the test's event loop.

Readiness is uvicorn's own ``started`` flag, never a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from core.app import create_app
from core.cli import uvicorn_options
from core.clock import Clock, FakeClock
from core.config import Settings, deep_merge, load_settings
from core.node import Node

FAST_AUTH = {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1}


def node_fake_clock() -> FakeClock:
    """A fake clock for a whole node, starting at the real wall time: ids need a time after the snowflake epoch,
    and SDK clients (on the real clock) must see the node's tokens as fresh."""
    return FakeClock(start_wall_ms=time.time_ns() // 1_000_000)


def settings_for_test(data_dir: Path, overrides: dict[str, Any] | None = None) -> Settings:
    base: dict[str, Any] = {
        "server": {
            "data_dir": str(data_dir),
            "port": 0,
            "origins": ["http://testserver"],
            "gc_tuning": False,
            "log_level": "warning",
        },
        "auth": {**FAST_AUTH, "admins": ["admin"]},
        "limits": {"rate_per_s": 1000, "rate_burst": 2000},
    }
    return load_settings(None, deep_merge(base, overrides or {}))


@dataclass
class RunningServer:
    url: str
    node: Node
    server: uvicorn.Server
    task: asyncio.Task[None]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


@contextlib.asynccontextmanager
async def running_server(
    settings: Settings, port: int = 0, clock: Clock | None = None
) -> AsyncIterator[RunningServer]:
    """``clock``: a :class:`core.clock.FakeClock` puts every timer of the node on fake time (tests advance it)."""
    app = create_app(settings, clock)
    opts = uvicorn_options(settings, app.state.node.clock)
    opts.update(port=port, loop="asyncio", log_level="warning")
    server = uvicorn.Server(uvicorn.Config(app, **opts))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server exited before starting")
        await asyncio.sleep(0.01)
    sock = server.servers[0].sockets[0]
    host, bound = sock.getsockname()[:2]
    try:
        yield RunningServer(f"http://{host}:{bound}", app.state.node, server, task)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
