"""Private backend instances an experiment starts for itself, so the backend-restart fault never touches a shared
system service. Each listens on a free loopback port with its data in the run's directory.

Implemented: Redis (``redis-server``, no persistence), MariaDB (``mariadbd`` on its own data directory, which a
restart keeps, like a database crash and recovery; optionally with a replica), MongoDB's stand-in and RabbitMQ (its own node name, ports, Mnesia directory and
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
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from experiments.harness.server import free_port


class BackendError(RuntimeError):
    pass


class PrivateBackendConfig(BaseModel):
    """Options of a private instance (the instance's kind is its key under ``backends``)."""

    model_config = ConfigDict(extra="forbid")

    # mariadb only: also start a read replica of it (placeholder ``{backend.mariadb.replica_url}``)
    replica: bool = False


class PrivateBackend(Protocol):
    name: str

    @property
    def url(self) -> str: ...

    @property
    def parts(self) -> tuple[str, ...]:
        """Its server processes by role (``primary``, and ``replica`` for a replicated MariaDB)."""
        ...

    def placeholders(self) -> dict[str, str]:
        """``{backend.<name>.<key>}`` values for the server settings: ``url`` always."""
        ...

    def pids(self) -> dict[str, int]:
        """The running server process of each part (for its CPU time)."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def start_part(self, part: str) -> None: ...

    async def stop_part(self, part: str) -> None: ...


class _OneProcess(ABC):
    """A backend of one server process: one part (``primary``), one URL, a port of its own."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None

    @property
    @abstractmethod
    def url(self) -> str: ...

    @property
    def parts(self) -> tuple[str, ...]:
        return ("primary",)

    def placeholders(self) -> dict[str, str]:
        return {"url": self.url}

    def pids(self) -> dict[str, int]:
        running = self.proc is not None and self.proc.returncode is None
        return {"primary": self.proc.pid} if running and self.proc is not None else {}

    @abstractmethod
    async def start(self) -> None: ...

    async def _spawn(self, cmd: list[str], log_name: str, start_timeout_s: float, **options: Any) -> None:
        """Run ``cmd`` with its output appended to ``<workdir>/<log_name>``; return once it listens on the port."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / log_name).open("ab")
        self.proc = await asyncio.create_subprocess_exec(*cmd, stdout=log, stderr=log, **options)
        log.close()
        await _wait_port(self.port, self.proc, start_timeout_s, f"private {Path(cmd[0]).name}")

    async def stop(self) -> None:
        """Kill the server (a crash, not a shutdown)."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self.proc = None

    def _check(self, part: str) -> None:
        if part != "primary":
            raise BackendError(f"{type(self).__name__} has one part, 'primary', not {part!r}")

    async def start_part(self, part: str) -> None:
        self._check(part)
        await self.start()

    async def stop_part(self, part: str) -> None:
        self._check(part)
        await self.stop()


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


class PrivateRedis(_OneProcess):
    """``redis-server`` on a free port, no persistence (a restart loses its data, like a cache node crash)."""

    name = "redis"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise BackendError("redis-server is not installed (apt-get install redis-server)")
        await self._spawn(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            "redis.log", 20,
        )  # fmt: skip


class _Mariadbd:
    """One ``mariadbd`` on a free port with its own data directory (``mariadb-install-db`` on first start)."""

    def __init__(self, workdir: Path, args: list[str]) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.datadir = workdir / "data"
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> bool:
        """Start the server; True when its data directory was created now (a first start)."""
        server = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin")
        install = shutil.which("mariadb-install-db")
        if server is None or install is None or shutil.which("mariadb") is None:
            raise BackendError("MariaDB server tools are not installed (apt-get install mariadb-server)")
        first = not self.datadir.exists()
        # Its own temporary directory: in the shared /tmp, two bootstraps at once (parallel tests, other
        # sessions) collided on mariadbd's temporary tables ("unknown table mysql.tmp_user_sys").
        tmpdir = self.workdir / "tmp"
        tmpdir.mkdir(parents=True, exist_ok=True)
        if first:
            self.datadir.mkdir(parents=True)
            await _run(
                install, "--no-defaults", f"--datadir={self.datadir}", "--user=root", "--skip-test-db",
                "--auth-root-authentication-method=normal", f"--tmpdir={tmpdir}",
            )  # fmt: skip
        log = (self.workdir / "mariadb.log").open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            server, "--no-defaults", f"--datadir={self.datadir}", f"--port={self.port}", "--bind-address=127.0.0.1",
            f"--socket={self.workdir / 'mysqld.sock'}", f"--pid-file={self.workdir / 'mysqld.pid'}", "--user=root",
            f"--tmpdir={tmpdir}", "--innodb-buffer-pool-size=64M", *self.args, stdout=log, stderr=log,
        )  # fmt: skip
        log.close()
        await _wait_port(self.port, self.proc, 60, f"private mariadbd ({self.workdir.name})")
        return first

    async def sql(self, statement: str) -> str:
        client = shutil.which("mariadb") or "mariadb"
        return await _run(
            client, "--no-defaults", "-uroot", "-h127.0.0.1", f"-P{self.port}", "-N", "-B", "-e", statement
        )

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self.proc = None


async def _run(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise BackendError(f"{argv[0]} failed: {out.decode(errors='replace')[-1500:]}")
    return out.decode(errors="replace")


class PrivateMariaDB:
    """``mariadbd`` on a free port with a fresh data directory and a ``wsim`` database; with ``replica``, a
    second ``mariadbd`` replicates it (MariaDB GTID replication, row-based binlog, read-only), for the user
    store's read/write split (its URL is the ``replica_url`` placeholder); wsim then connects as user ``wsim``.

    ``stop`` is SIGKILL (a crash); ``start`` again recovers the same data directories, and a restarted replica
    resumes from its crash-safe GTID position."""

    name = "mariadb"

    def __init__(self, workdir: Path, replica: bool = False) -> None:
        self.workdir = workdir
        binlog = ["--server-id=1", "--log-bin=primary-bin", "--binlog-format=ROW"]
        self.primary = _Mariadbd(workdir, binlog if replica else ["--skip-log-bin"])
        self.replica = (
            _Mariadbd(
                workdir / "replica", ["--server-id=2", "--skip-log-bin", "--read-only", "--relay-log=relay"]
            )
            if replica
            else None
        )

    @property
    def parts(self) -> tuple[str, ...]:
        return ("primary", "replica") if self.replica is not None else ("primary",)

    @property
    def _user(self) -> str:
        # With a replica, wsim connects as a user without admin rights, whom the replica's read_only binds (root
        # may write to a read-only MariaDB): a write sent to the replica by mistake fails instead of diverging it.
        return "wsim" if self.replica is not None else "root"

    @property
    def url(self) -> str:
        return f"mysql://{self._user}@127.0.0.1:{self.primary.port}/wsim"

    def placeholders(self) -> dict[str, str]:
        out = {"url": self.url}
        if self.replica is not None:
            out["replica_url"] = f"mysql://{self._user}@127.0.0.1:{self.replica.port}/wsim"
        return out

    def pids(self) -> dict[str, int]:
        return {
            part: srv.proc.pid
            for part, srv in (("primary", self.primary), ("replica", self.replica))
            if srv is not None and srv.proc is not None and srv.proc.returncode is None
        }

    async def start(self) -> None:
        await self.start_part("primary")
        if self.replica is not None:
            await self.start_part("replica")

    async def start_part(self, part: str) -> None:
        if part == "primary":
            if await self.primary.start():
                setup = "CREATE DATABASE IF NOT EXISTS wsim"
                if self.replica is not None:  # binlogged: the replica gets the user too
                    for host in ("localhost", "127.0.0.1"):
                        setup += f"; CREATE USER 'wsim'@'{host}'; GRANT ALL ON wsim.* TO 'wsim'@'{host}'"
                await self.primary.sql(setup)
            return
        replica = self._replica(part)
        if await replica.start():
            # From the primary's first binlog event on: the CREATE DATABASE above and everything after it.
            await replica.sql(
                f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={self.primary.port}, MASTER_USER='root', "
                "MASTER_PASSWORD='', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; START SLAVE"
            )
            await self._caught_up(replica, 60)

    async def _caught_up(self, replica: _Mariadbd, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if (await replica.sql("SHOW DATABASES LIKE 'wsim'")).strip() == "wsim":
                return
            await asyncio.sleep(0.2)
        status = await replica.sql("SHOW SLAVE STATUS\\G")
        raise BackendError(
            f"the private MariaDB replica did not replicate within {timeout_s} s: {status[-1500:]}"
        )

    def _replica(self, part: str) -> _Mariadbd:
        if part != "replica" or self.replica is None:
            raise BackendError(f"mariadb has no part {part!r} (parts: {', '.join(self.parts)})")
        return self.replica

    async def stop(self) -> None:
        if self.replica is not None:
            await self.replica.stop()
        await self.primary.stop()

    async def stop_part(self, part: str) -> None:
        await (self.primary.stop() if part == "primary" else self._replica(part).stop())


_RABBITMQ_SCRIPT_DIR = "/usr/lib/rabbitmq/bin"


class PrivateRabbitMQ(_OneProcess):
    """A RabbitMQ node of its own (node name, AMQP and distribution ports, Mnesia and log directories, no
    plugins). ``stop`` kills the node (its Erlang VM); ``start`` boots it again on the same data."""

    name = "rabbitmq"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.dist_port = free_port()
        self.node = f"wsim{self.port}@localhost"

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
        self.workdir.mkdir(parents=True, exist_ok=True)  # _env writes into it
        await self._spawn(
            [exe], "rabbitmq.out", 90, env=self._env(), start_new_session=True, cwd=self.workdir
        )

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


class PrivateMongo(_OneProcess):
    """A MongoDB wire-protocol server for the ``mongo`` store. MongoDB itself cannot be installed on this
    machine, so this runs ``nx-27017`` (PyPI), the stand-in the store tests use; Docker Compose runs the real
    image. Its performance is not MongoDB's: a comparison against it measures the code path, not MongoDB."""

    name = "mongo"

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    async def start(self) -> None:
        exe = shutil.which("nx-27017") or shutil.which("nx-27017", path=str(Path(sys.executable).parent))
        if exe is None:
            raise BackendError("nx-27017 is not installed (pip install -e '.[test]')")
        await self._spawn(
            [exe, "--data-dir", str(self.workdir / "db"), "--host", "127.0.0.1", "-p", str(self.port),
             "--log-file", str(self.workdir / "nx-daemon.log"), "--pid-file", str(self.workdir / "nx.pid")],
            "nx.log", 30,
        )  # fmt: skip


PRIVATE_BACKENDS: dict[
    str, type[PrivateRedis] | type[PrivateMariaDB] | type[PrivateRabbitMQ] | type[PrivateMongo]
] = {
    "redis": PrivateRedis,
    "mariadb": PrivateMariaDB,
    "rabbitmq": PrivateRabbitMQ,
    "mongo": PrivateMongo,
}


def make_backend(kind: str, workdir: Path, config: PrivateBackendConfig | None = None) -> PrivateBackend:
    config = config or PrivateBackendConfig()
    try:
        cls = PRIVATE_BACKENDS[kind]
    except KeyError:
        raise BackendError(f"no private {kind} instance; known: {', '.join(PRIVATE_BACKENDS)}") from None
    if cls is PrivateMariaDB:
        return PrivateMariaDB(workdir, replica=config.replica)
    if config.replica:
        raise BackendError(f"a private {kind} has no replica (only mariadb does)")
    return cls(workdir)
