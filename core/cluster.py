"""Run N nodes of one cluster on this machine as real processes (``wsim cluster``, the cluster tests, the
cluster benchmark).

The launcher binds every node's listening socket itself (consecutive ports from ``base_port``, or free ports when
it is 0) and hands it to the child (``wsim serve --fd``), so there is no race for a port between choosing and
binding it. Each child gets the same resolved configuration file and its own node name (``node-1``..``node-N``)
through the environment. Readiness is the node answering ``GET /healthz``, polled; a node that exits before it is
ready fails the start with the end of its log.

Nodes on one machine share the data directory: the SQLite stores take the write lock per transaction
(``BEGIN IMMEDIATE``), so a sequence number is never allocated twice across processes. The JWT secret is created
once by the launcher, before any node starts, so every node accepts every node's tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from core.config import ConfigError, Settings

# A cluster without these would deliver nothing across nodes (each node would only see its own devices).
CLUSTER_DEFAULTS: dict[str, Any] = {
    "bus": {"kind": "redis", "url": "redis://127.0.0.1:6379/0"},
    "presence": {"kind": "redis", "url": "redis://127.0.0.1:6379/0"},
}


def cluster_settings(settings: Settings, bus: str | None = None) -> tuple[Settings, list[str]]:
    """Make ``settings`` fit for several nodes; return them with notes on what was changed and why.

    A local bus or in-memory presence cannot cross processes: they are replaced by the Redis ones (or the bus
    named by ``bus``). The per-node L1 cache would serve stale data written through another node, so it is
    turned off unless the configuration chose a cache kind with cross-node invalidation.
    """
    data = settings.model_dump(mode="json")
    strategies = data["strategies"]
    notes: list[str] = []
    if bus is not None and strategies["bus"]["kind"] != bus:
        strategies["bus"] = {"kind": bus}
        notes.append(f"bus: {bus} (from --bus) with its default settings")
    elif strategies["bus"]["kind"] == "local":
        strategies["bus"] = dict(CLUSTER_DEFAULTS["bus"])
        notes.append("bus: the local bus cannot reach other nodes; using redis at 127.0.0.1:6379")
    if strategies["presence"]["kind"] == "memory":
        strategies["presence"] = dict(CLUSTER_DEFAULTS["presence"])
        notes.append("presence: in-memory presence is per node; using redis at 127.0.0.1:6379")
    if strategies["cache"]["kind"] == "l1":
        strategies["cache"] = {"kind": "off"}
        notes.append("cache: l1 is per node and would serve stale data across nodes; turned off")
    try:
        return Settings(**data), notes
    except Exception as exc:  # pydantic ValidationError: report like any configuration error
        raise ConfigError(f"cluster configuration: {exc}") from None


def bind_listener(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(8192)
    sock.set_inheritable(True)
    return sock


@dataclass
class NodeProcess:
    index: int
    name: str
    host: str
    port: int
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


@dataclass
class LocalCluster:
    """N nodes as child processes. Use ``async with`` or ``start()`` / ``stop()``."""

    settings: Settings
    nodes: int
    base_port: int = 0
    ready_timeout_s: float = 60.0
    extra_env: dict[str, str] = field(default_factory=dict)
    members: list[NodeProcess] = field(default_factory=list)
    _config_path: Path | None = None

    @property
    def urls(self) -> list[str]:
        return [m.url for m in self.members]

    @property
    def data_dir(self) -> Path:
        return self.settings.data_path

    async def __aenter__(self) -> LocalCluster:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    # ---------------------------------------------------------------- start
    async def start(self) -> list[str]:
        from core.app import jwt_secret

        if self.nodes < 1:
            raise ConfigError("a cluster needs at least one node")
        host = self.settings.server.host
        sockets: list[socket.socket] = []
        try:
            for i in range(self.nodes):
                sockets.append(bind_listener(host, self.base_port + i if self.base_port else 0))  # noqa: PERF401 - close the bound ones if a later bind fails
        except ConfigError:
            for s in sockets:
                s.close()
            raise
        log_dir = self.data_dir / "cluster-logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.members = [
            NodeProcess(i, f"node-{i + 1}", host, s.getsockname()[1], log_dir / f"node-{i + 1}.log")
            for i, s in enumerate(sockets)
        ]
        jwt_secret(self.settings)  # create the shared secret once, before any node races to
        self._write_config()
        try:
            for member, sock in zip(self.members, sockets, strict=True):
                await self._spawn(member, sock)
            await asyncio.gather(*(self._wait_ready(m) for m in self.members))
        except BaseException:
            await self.stop()
            raise
        finally:
            for s in sockets:
                s.close()  # the children hold their copies; a killed node's port then refuses connections
        return self.urls

    def _write_config(self) -> None:
        data = self.settings.model_dump(mode="json")
        data["server"].pop("node", None)
        data["server"].pop("port", None)
        origins = set(data["server"]["origins"])
        for m in self.members:
            origins |= {m.url, m.url.replace("127.0.0.1", "localhost")}
        data["server"]["origins"] = sorted(origins)
        path = self.data_dir / "cluster.resolved.yaml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yaml.safe_dump(data, fh, sort_keys=False, allow_unicode=True)
        self._config_path = path

    async def _spawn(self, member: NodeProcess, sock: socket.socket) -> None:
        assert self._config_path is not None
        env = {
            **os.environ,
            **self.extra_env,
            "WSIM_SERVER__NODE": member.name,
            "WSIM_SERVER__PORT": str(member.port),
            "WSIM_SERVER__HOST": member.host,
        }
        argv = [sys.executable, "-m", "core.cli", "serve", "--config", str(self._config_path)]
        argv += ["--fd", str(sock.fileno())]
        with member.log_path.open("ab") as log:
            log.write(f"\n==== start {member.starts + 1} of {member.name} on {member.url}\n".encode())
            log.flush()
            member.proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                pass_fds=(sock.fileno(),),
                start_new_session=True,  # Ctrl-C reaches the launcher, which stops the nodes in order
            )
        member.starts += 1

    async def _wait_ready(self, member: NodeProcess) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        async with httpx.AsyncClient(timeout=2.0) as http:
            while True:
                if not member.running:
                    raise RuntimeError(f"{member.name} exited before it was ready:\n{self.log_tail(member)}")
                with contextlib.suppress(httpx.HTTPError):
                    resp = await http.get(f"{member.url}/healthz")
                    if resp.status_code == 200 and resp.json().get("node") == member.name:
                        return
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{member.name} not ready within {self.ready_timeout_s:g} s:\n{self.log_tail(member)}"
                    )
                await asyncio.sleep(0.05)

    def log_tail(self, member: NodeProcess, lines: int = 30) -> str:
        try:
            text = member.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # ---------------------------------------------------------------- faults and restarts
    async def kill(self, index: int) -> None:
        """SIGKILL: no shutdown at all (sockets reset, leases left to expire)."""
        member = self.members[index]
        if member.proc is not None and member.running:
            member.proc.send_signal(signal.SIGKILL)
            await member.proc.wait()

    async def restart(self, index: int) -> None:
        """Start a stopped or killed node again on its port."""
        member = self.members[index]
        if member.running:
            raise RuntimeError(f"{member.name} is running")
        sock = bind_listener(member.host, member.port)
        try:
            await self._spawn(member, sock)
        finally:
            sock.close()
        await self._wait_ready(member)

    # ---------------------------------------------------------------- stop
    async def stop(self, timeout_s: float = 20.0) -> dict[str, int | None]:
        """SIGTERM every node (graceful: sockets closed with 1001, leases handed over), SIGKILL stragglers."""
        for m in self.members:
            if m.proc is not None and m.running:
                with contextlib.suppress(ProcessLookupError):
                    m.proc.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for m in self.members:
            if m.proc is None:
                codes[m.name] = None
                continue
            try:
                codes[m.name] = await asyncio.wait_for(m.proc.wait(), timeout_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    m.proc.kill()
                codes[m.name] = await m.proc.wait()
        return codes

    async def wait_any_exit(self) -> NodeProcess:
        """The first node whose process ends (the launcher reports it)."""
        waits = {
            asyncio.ensure_future(m.proc.wait()): m for m in self.members if m.proc is not None and m.running
        }
        if not waits:
            raise RuntimeError("no node is running")
        done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
        return waits[next(iter(done))]
