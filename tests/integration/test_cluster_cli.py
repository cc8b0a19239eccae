"""``wsim cluster`` as a user runs it: N processes on consecutive ports, URLs printed, Ctrl-C stops them all."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from core.cluster import cluster_settings
from core.config import load_settings
from tests.support.brokers import free_port
from tests.support.services import namespace, reachable, require_service

pytestmark = pytest.mark.slow  # starts `wsim cluster` as a process tree


def test_cluster_settings_replace_what_cannot_cross_processes() -> None:
    settings, notes = cluster_settings(load_settings())
    st = settings.strategies
    assert (st.bus.kind, st.presence.kind, st.cache.kind) == ("redis", "redis", "off")
    assert len(notes) == 3
    chosen = load_settings(
        None, {"strategies": {"bus": {"kind": "mqtt", "prefix": "x"}, "cache": {"kind": "off"}}}
    )
    settings, notes = cluster_settings(chosen)
    assert settings.strategies.bus.kind == "mqtt" and settings.strategies.bus.prefix == "x"  # type: ignore[union-attr]
    assert [n.split(":")[0] for n in notes] == ["presence"]
    settings, _ = cluster_settings(chosen, bus="rabbitmq")
    assert settings.strategies.bus.kind == "rabbitmq"


def _consecutive_free_ports(n: int) -> int:
    for _ in range(50):
        base = free_port()
        if base + n < 65535 and all(_free(base + i) for i in range(n)):
            return base
    raise RuntimeError("no consecutive free ports")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def test_wsim_cluster_starts_prints_and_stops_cleanly(tmp_path: Path) -> None:
    host, port = require_service("redis")
    prefix = namespace("wsimcli")
    redis_url = f"redis://{host}:{port}/0"
    config = tmp_path / "cluster.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "auth": {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1},
                "server": {"gc_tuning": False, "log_level": "warning"},
                "strategies": {
                    "bus": {"kind": "redis", "url": redis_url, "prefix": prefix},
                    "presence": {"kind": "redis", "url": redis_url, "prefix": prefix},
                    "cache": {"kind": "off"},
                },
            }
        )
    )
    base = _consecutive_free_ports(2)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "core.cli",
        "cluster",
        "--nodes",
        "2",
        "--config",
        str(config),
        "--port",
        str(base),
        "--data-dir",
        str(tmp_path / "data"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    out: list[str] = []
    try:
        urls: list[str] = []
        while len(urls) < 2:
            line = (await asyncio.wait_for(proc.stdout.readline(), 90)).decode()
            assert line, "wsim cluster exited early:\n" + "".join(out)
            out.append(line)
            if m := re.match(r"\s+node-\d+\s+(http://\S+?)/\s", line):
                urls.append(m.group(1))
        assert urls == [f"http://127.0.0.1:{base}", f"http://127.0.0.1:{base + 1}"]
        async with httpx.AsyncClient() as http:
            nodes = [(await http.get(f"{u}/healthz")).json()["node"] for u in urls]
        assert nodes == ["node-1", "node-2"]
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        rest = (await asyncio.wait_for(proc.stdout.read(), 60)).decode()
        code = await proc.wait()
    assert code == 0, "".join(out) + rest
    assert "stopped node-1" in rest
    assert not reachable("127.0.0.1", base) and not reachable("127.0.0.1", base + 1)


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--nodes", "0"], "at least one node"), (["--port", "{busy}"], "cannot listen on")],
)
async def test_wsim_cluster_refuses_bad_input_with_a_clear_message(
    args: list[str], message: str, tmp_path: Path
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        argv = [a.replace("{busy}", str(busy.getsockname()[1])) for a in args]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "core.cli",
            "cluster",
            *argv,
            "--data-dir",
            str(tmp_path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert message in err.decode()
