"""A wsim node as a real process (``python -m core.cli serve --config <generated>``) on a free port.

Readiness is the node answering ``/healthz``; the process is the unit of the node-kill fault (SIGKILL, then the
same command on the same port and data directory). psutil samples its CPU and memory.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

from core.config import Settings, load_settings


class ServerStartError(RuntimeError):
    pass


async def spawn_python(args: list[str], log_path: Path, **options: Any) -> asyncio.subprocess.Process:
    """``python -m <args>`` with this interpreter, its output appended to ``log_path``."""
    with log_path.open("ab") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", *args, stdout=log, stderr=log, **options
        )


async def wait_healthy(
    proc: asyncio.subprocess.Process, url: str, name: str, log_path: Path, timeout_s: float
) -> None:
    """Return once ``<url>/healthz`` answers 200; ``ServerStartError`` if the process exits first (with the tail
    of its log) or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=2.0) as http:
        while True:
            if proc.returncode is not None:
                tail = (await asyncio.to_thread(log_path.read_text, errors="replace"))[-2000:]
                raise ServerStartError(f"{name} exited with {proc.returncode}:\n{tail}")
            try:
                resp = await http.get(url + "/healthz")
                if resp.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise ServerStartError(f"{name} not ready on {url} within {timeout_s} s (see {log_path})")
            await asyncio.sleep(0.05)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class ResourceSample:
    t: float  # wall clock, s
    cpu_percent: float  # of one core (200 = both cores of this machine)
    rss_bytes: int
    num_fds: int


@dataclass
class ServerProcess:
    """One node. ``settings`` is the full server settings mapping (validated by :func:`load_settings`)."""

    settings: dict[str, Any]
    workdir: Path
    name: str = "node0"
    port: int = 0
    proc: asyncio.subprocess.Process | None = None
    samples: list[ResourceSample] = field(default_factory=list)
    restarts: int = 0
    _sampler: asyncio.Task[None] | None = None
    _ps: psutil.Process | None = None

    def __post_init__(self) -> None:
        self.port = self.port or free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        data = dict(self.settings)
        server = dict(data.get("server", {}))
        server.update(port=self.port, host="127.0.0.1", node=self.name)
        server.setdefault("data_dir", str(self.workdir / "data"))
        data["server"] = server
        self.resolved: Settings = load_settings(None, data)  # validation errors surface here, before a spawn
        self.config_path = self.workdir / f"{self.name}.yaml"
        self.config_path.write_text(
            yaml.safe_dump(self.resolved.model_dump(mode="json"), sort_keys=False), encoding="utf-8"
        )
        self.log_path = self.workdir / f"{self.name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    async def start(self, timeout_s: float = 60.0) -> None:
        self.proc = await spawn_python(
            ["core.cli", "serve", "--config", str(self.config_path)],
            self.log_path,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        await self.wait_ready(timeout_s)
        self._ps = psutil.Process(self.proc.pid)
        self._ps.cpu_percent(None)
        if self._sampler is None:
            self._sampler = asyncio.create_task(self._sample_loop())

    async def wait_ready(self, timeout_s: float) -> None:
        assert self.proc is not None
        await wait_healthy(self.proc, self.url, self.name, self.log_path, timeout_s)

    async def _sample_loop(self, interval_s: float = 0.5) -> None:
        while True:
            await asyncio.sleep(interval_s)
            ps = self._ps
            if ps is None:
                continue
            try:
                with ps.oneshot():
                    self.samples.append(
                        ResourceSample(time.time(), ps.cpu_percent(None), ps.memory_info().rss, ps.num_fds())
                    )
            except psutil.Error:
                continue

    def rss_bytes(self) -> int:
        return psutil.Process(self.pid).memory_info().rss if self.pid else 0

    async def kill(self, how: str = "kill") -> None:
        """SIGKILL (a crash) or SIGTERM (a graceful stop: clients get 1001); waits for the exit."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self._ps = None
        self.proc.send_signal(signal.SIGKILL if how == "kill" else signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    async def restart(self) -> None:
        self.restarts += 1
        await self.start()

    async def metrics_text(self) -> str:
        async with httpx.AsyncClient(timeout=10.0) as http:
            resp = await http.get(self.url + "/metrics")
            resp.raise_for_status()
            return resp.text

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            try:
                await self._sampler
            except asyncio.CancelledError:
                pass
            self._sampler = None
        await self.kill("term")
