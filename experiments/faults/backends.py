"""Private backend instances an experiment starts for itself, so the backend-restart fault never touches a shared
system service. Each listens on a free loopback port with its data in the run's directory.

Implemented: Redis (``redis-server``, no persistence), MariaDB (``mariadbd`` on its own data directory, which a
restart keeps, like a database crash and recovery) and RabbitMQ (its own node name, ports, Mnesia directory and
an empty plugin list, so it never collides with the system broker or its management port).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from experiments.harness.server import free_port


class BackendError(RuntimeError):
    pass


class PrivateBackendConfig(BaseModel):
    """Options of a private instance (none yet: the instance's kind is its key under ``backends``)."""

    model_config = ConfigDict(extra="forbid")


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


async def _wait_closed(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            return
        await asyncio.sleep(0.05)
    raise BackendError(f"port {port} still open {timeout_s} s after the backend was killed")


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


class PrivateMariaDB:
    """``mariadbd`` on a free port with a fresh data directory (``mariadb-install-db``) and a ``wsim`` database.

    ``stop`` is SIGKILL (a crash); ``start`` again recovers the same data directory."""

    name = "mariadb"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.datadir = workdir / "data"
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/wsim"

    async def _run(self, *argv: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise BackendError(f"{argv[0]} failed: {out.decode(errors='replace')[-1500:]}")

    async def start(self) -> None:
        server = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin")
        install = shutil.which("mariadb-install-db")
        client = shutil.which("mariadb")
        if server is None or install is None or client is None:
            raise BackendError("MariaDB server tools are not installed (apt-get install mariadb-server)")
        first = not self.datadir.exists()
        if first:
            self.datadir.mkdir(parents=True)
            await self._run(
                install, "--no-defaults", f"--datadir={self.datadir}", "--user=root", "--skip-test-db",
                "--auth-root-authentication-method=normal",
            )  # fmt: skip
        log = (self.workdir / "mariadb.log").open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            server, "--no-defaults", f"--datadir={self.datadir}", f"--port={self.port}", "--bind-address=127.0.0.1",
            f"--socket={self.workdir / 'mysqld.sock'}", f"--pid-file={self.workdir / 'mysqld.pid'}", "--user=root",
            "--skip-log-bin", "--innodb-buffer-pool-size=64M", stdout=log, stderr=log,
        )  # fmt: skip
        log.close()
        await _wait_port(self.port, self.proc, 60, "private mariadbd")
        if first:
            await self._run(
                client,
                "--no-defaults",
                "-uroot",
                "-h127.0.0.1",
                f"-P{self.port}",
                "-e",
                "CREATE DATABASE IF NOT EXISTS wsim",
            )

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self.proc = None


_RABBITMQ_SCRIPT_DIR = "/usr/lib/rabbitmq/bin"


class PrivateRabbitMQ:
    """A RabbitMQ node of its own (node name, AMQP and distribution ports, Mnesia and log directories, no
    plugins). ``stop`` kills the node (its Erlang VM); ``start`` boots it again on the same data."""

    name = "rabbitmq"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.dist_port = free_port()
        self.node = f"wsim{self.port}@localhost"
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        plugins = self.workdir / "enabled_plugins"
        if not plugins.exists():
            plugins.write_text("[].\n", encoding="utf-8")
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.workdir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.workdir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
            "RABBITMQ_CONFIG_FILE": str(self.workdir / "rabbitmq"),  # absent: defaults
            "HOME": str(self.workdir),  # the Erlang cookie of this node lives here
        }

    async def start(self) -> None:
        # The server script itself: /usr/sbin/rabbitmq-server is a wrapper that switches to the rabbitmq user,
        # which could not write this run's (root-owned, private) directories.
        exe = shutil.which("rabbitmq-server", path=_RABBITMQ_SCRIPT_DIR) or shutil.which("rabbitmq-server")
        if exe is None:
            raise BackendError("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "rabbitmq.out").open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            exe, stdout=log, stderr=log, env=self._env(), start_new_session=True, cwd=self.workdir
        )
        log.close()
        await _wait_port(self.port, self.proc, 90, "private rabbitmq-server")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            # rabbitmq-server is a script around the Erlang VM: kill its whole process group (a node crash)
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await self.proc.wait()
            await _wait_closed(self.port, 15)  # the VM outlives its script for a moment
        self.proc = None


class PrivateMongo:
    """A MongoDB wire-protocol server for the ``mongo`` store. MongoDB itself cannot be installed on this
    machine, so this runs ``nx-27017`` (PyPI), the stand-in the store tests use; Docker Compose runs the real
    image. Its performance is not MongoDB's: a comparison against it measures the code path, not MongoDB."""

    name = "mongo"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    async def start(self) -> None:
        exe = shutil.which("nx-27017") or shutil.which("nx-27017", path=str(Path(sys.executable).parent))
        if exe is None:
            raise BackendError("nx-27017 is not installed (pip install -e '.[test]')")
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "nx.log").open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            exe, "--data-dir", str(self.workdir / "db"), "--host", "127.0.0.1", "-p", str(self.port),
            "--log-file", str(self.workdir / "nx-daemon.log"), "--pid-file", str(self.workdir / "nx.pid"),
            stdout=log, stderr=log,
        )  # fmt: skip
        log.close()
        await _wait_port(self.port, self.proc, 30, "nx-27017")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self.proc = None


PRIVATE_BACKENDS: dict[
    str, type[PrivateRedis] | type[PrivateMariaDB] | type[PrivateRabbitMQ] | type[PrivateMongo]
] = {
    "redis": PrivateRedis,
    "mariadb": PrivateMariaDB,
    "rabbitmq": PrivateRabbitMQ,
    "mongo": PrivateMongo,
}


def make_backend(kind: str, workdir: Path) -> PrivateBackend:
    try:
        cls = PRIVATE_BACKENDS[kind]
    except KeyError:
        raise BackendError(f"no private {kind} instance; known: {', '.join(PRIVATE_BACKENDS)}") from None
    return cls(workdir)
