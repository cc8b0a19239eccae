"""Private backend instances an experiment starts for itself, so the backend-restart fault never touches a shared
system service. Each listens on a free loopback port with its data in the run's directory.

Implemented: Redis (``redis-server``). MariaDB and RabbitMQ instances are not yet provided: no strategy on this
branch uses them; the config schema only accepts the kinds listed in :data:`PRIVATE_BACKENDS`.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict

from experiments.harness.server import free_port


class BackendError(RuntimeError):
    pass


class PrivateBackendConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["redis"] = "redis"


class PrivateBackend(Protocol):
    name: str

    @property
    def url(self) -> str: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def _wait_port(port: int, proc: asyncio.subprocess.Process, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise BackendError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise BackendError(f"{what} did not listen on {port} within {timeout_s} s")


class PrivateRedis:
    """``redis-server`` on a free port, no persistence (a restart loses its data, like a cache node crash)."""

    name = "redis"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise BackendError("redis-server is not installed (apt-get install redis-server)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "redis.log").open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self.workdir), stdout=log, stderr=log,
        )  # fmt: skip
        log.close()
        await _wait_port(self.port, self.proc, 20, "private redis-server")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self.proc = None


PRIVATE_BACKENDS = {"redis": PrivateRedis}


def make_backend(kind: str, workdir: Path) -> PrivateBackend:
    try:
        cls = PRIVATE_BACKENDS[kind]
    except KeyError:
        raise BackendError(f"no private {kind} instance; known: {', '.join(PRIVATE_BACKENDS)}") from None
    return cls(workdir)
