"""Brokers a test may break: private redis-server and mosquitto processes on free ports, and a way to make the
shared RabbitMQ drop one named connection. The shared services are never stopped.

Readiness is a successful TCP connect to the broker's port, polled; never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.processes import free_port, stop_process
from tests.support.services import IN_CI, reachable, unavailable


def _need_binary(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
    if path is None:
        message = f"{name} is not installed"
        if IN_CI:
            pytest.fail(f"{message}; CI must provide it")
        pytest.skip(f"{message} (skipped outside CI only)")
    return path


async def wait_port(port: int, up: bool = True, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while reachable("127.0.0.1", port, timeout=0.2) != up:
        if time.monotonic() > deadline:
            raise TimeoutError(f"port {port} did not go {'up' if up else 'down'} within {timeout} s")
        await asyncio.sleep(0.05)


@dataclass
class PrivateBroker:
    """A broker process of this test only; ``restart`` kills it (SIGKILL, like a crash) and starts it again."""

    name: str
    argv: list[str]
    port: int
    workdir: Path
    url: str = ""  # the address its clients are given, where they need more than the port
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = field(default=0)

    async def __aenter__(self) -> PrivateBroker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        log = (self.workdir / f"{self.name}.log").open("ab")
        self.proc = subprocess.Popen(self.argv, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        await wait_port(self.port)

    def crash(self) -> None:
        """SIGKILL and reap without yielding to the event loop: the clients under test find out only when they
        next use the broker, not from a background task that saw the connection drop in between."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    async def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(self.proc.wait, 10)
        self.proc = None
        await wait_port(self.port, up=False)

    async def restart(self, down_s: float = 0.0) -> None:
        await self.kill()
        if down_s:
            await asyncio.sleep(down_s)  # the outage itself is what is under test, not a readiness wait
        await self.start()
        self.restarts += 1

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            await asyncio.to_thread(stop_process, self.proc)
        self.proc = None


@contextlib.asynccontextmanager
async def private_redis(workdir: Path) -> AsyncIterator[PrivateBroker]:
    """No persistence: a restart empties it, the harshest case for a cache, a dedup window or presence."""
    binary = _need_binary("redis-server")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(workdir)]
    async with PrivateBroker("redis", argv, port, workdir, url=f"redis://127.0.0.1:{port}/0") as broker:
        yield broker


@contextlib.asynccontextmanager
async def private_mosquitto(workdir: Path) -> AsyncIterator[PrivateBroker]:
    binary = _need_binary("mosquitto")
    port = free_port()
    conf = workdir / f"mosquitto-{port}.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    async with PrivateBroker("mosquitto", [binary, "-c", str(conf)], port, workdir) as broker:
        yield broker


REPO = Path(__file__).resolve().parents[2]
SERVER_ACCOUNT = ("wsim", "wsim-mqtt")  # docker/mosquitto/provision.sh's defaults, as in the Compose stack


@contextlib.asynccontextmanager
async def private_mosquitto_acl(workdir: Path) -> AsyncIterator[PrivateBroker]:
    """A Mosquitto of this test with the shipped access control: docker/mosquitto/mosquitto.conf (its port and
    paths adapted) and a copy of the dynamic-security store seeded by docker/mosquitto/provision.sh."""
    binary = _need_binary("mosquitto")
    plugins = sorted(Path("/usr/lib").glob("*/mosquitto_dynamic_security.so"))
    plugins += [p for p in (Path("/usr/lib/mosquitto_dynamic_security.so"),) if p.exists()]
    if not plugins:
        unavailable("mosquitto's dynamic-security plugin is not installed")
    port = free_port()
    # Started as root, mosquitto drops to its own user, which must read and save the store: a world-writable
    # directory of its own under /tmp (pytest's tmp_path is private to root).
    store_dir = Path(tempfile.mkdtemp(prefix="wsim-dynsec-"))
    store_dir.chmod(0o777)
    store = store_dir / "dynamic-security.json"
    shutil.copyfile(REPO / "docker/mosquitto/dynamic-security.json", store)
    store.chmod(0o666)
    conf_text = (REPO / "docker/mosquitto/mosquitto.conf").read_text()
    replaced = {
        "listener 1883": f"listener {port} 127.0.0.1",
        "plugin /usr/lib/mosquitto_dynamic_security.so": f"plugin {plugins[0]}",
        "plugin_opt_config_file /mosquitto/data/dynamic-security.json": f"plugin_opt_config_file {store}",
    }
    for old, new in replaced.items():
        assert old in conf_text, f"docker/mosquitto/mosquitto.conf no longer has {old!r}"
        conf_text = conf_text.replace(old, new)
    conf = workdir / f"mosquitto-acl-{port}.conf"
    conf.write_text(conf_text)
    try:
        async with PrivateBroker("mosquitto-acl", [binary, "-c", str(conf)], port, workdir) as broker:
            yield broker
    finally:
        shutil.rmtree(store_dir, ignore_errors=True)


def rabbitmq_close_connections(name_prefix: str, reason: str = "closed by a wsim test") -> int:
    """Force-close the shared RabbitMQ's connections whose client-provided name starts with ``name_prefix``
    (no other's), all at once."""
    ctl = _need_binary("rabbitmqctl")
    # The table format prints the pid as close_connection wants it ("<rabbit@host.N.M.0>"; the JSON one
    # does not) and the client properties as a list of {"key",value} pairs.
    out = subprocess.run(
        [ctl, "list_connections", "pid", "client_properties", "-q"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    needle = f'{{"connection_name","{name_prefix}'
    pids = []
    for line in out.splitlines():
        pid, _, props = line.partition("\t")
        if pid.startswith("<") and needle in props:
            pids.append(pid)
    closers = [
        subprocess.Popen(
            [ctl, "close_connection", pid, reason], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        for pid in pids
    ]
    for proc in closers:
        _, err = proc.communicate(timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"rabbitmqctl close_connection failed: {err.decode(errors='replace')}")
    return len(pids)
