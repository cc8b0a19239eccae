"""Clusters of real node processes for tests, over a chosen bus, and a message ledger to check delivery.

Each test gets its own data directory (shared by its nodes, as ``wsim cluster`` does) and its own Redis key
prefix / exchange / topic prefix, so parallel runs never see each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.cluster import LocalCluster
from core.sdk import WsimClient
from tests.support.server import settings_for_test
from tests.support.services import namespace, require_service

PASSWORD = "password-123"


def bus_config(kind: str, prefix: str, port: int | None = None) -> dict[str, Any]:
    """The bus settings of a test cluster; ``port`` points at a private broker instead of the shared one."""
    if kind == "redis":
        host, p = ("127.0.0.1", port) if port else require_service("redis")
        return {"kind": "redis", "url": f"redis://{host}:{p}/0", "prefix": prefix, "reconnect_max_s": 0.5}
    if kind == "rabbitmq":
        host, p = require_service("rabbitmq")
        return {
            "kind": "rabbitmq",
            "url": f"amqp://guest:guest@{host}:{p}/",
            "prefix": prefix,
            "queue_expires_s": 30,
            "reconnect_max_s": 0.5,
        }
    if kind == "mqtt":
        host, p = ("127.0.0.1", port) if port else require_service("mosquitto")
        return {"kind": "mqtt", "host": host, "port": p, "prefix": prefix, "reconnect_max_s": 0.5}
    raise ValueError(kind)


@contextlib.asynccontextmanager
async def running_cluster(
    tmp_path: Path, bus: str, nodes: int = 3, bus_port: int | None = None, **overrides: Any
) -> AsyncIterator[LocalCluster]:
    prefix = namespace("wsimcl")
    host, port = require_service("redis")
    settings = settings_for_test(
        tmp_path / "data",
        {
            "server": {"log_level": "info"},
            "strategies": {
                "bus": bus_config(bus, prefix, bus_port),
                "presence": {
                    "kind": "redis",
                    "url": f"redis://{host}:{port}/0",
                    "prefix": prefix,
                    "node_lease_s": 2.0,
                    "renew_s": 0.5,
                },
                "cache": {"kind": "off"},
            },
            **overrides,
        },
    )
    cluster = LocalCluster(settings, nodes)
    async with cluster:
        yield cluster


def client(urls: list[str], first: int, **kwargs: Any) -> WsimClient:
    """A client that connects to node ``first`` and fails over to the others in order."""
    ordered = urls[first:] + urls[:first]
    return WsimClient(ordered, backoff_base_s=0.1, backoff_cap_s=1.0, **kwargs)


@dataclass
class Ledger:
    """Every acknowledged message, and what each device released to its application."""

    acked: dict[str, list[tuple[int, str, str]]] = field(default_factory=lambda: defaultdict(list))
    # conv -> [(seq, sender device, text)]
    received: dict[tuple[str, str], list[tuple[int, str]]] = field(default_factory=lambda: defaultdict(list))
    # (device, conv) -> [(seq, text)]

    def ack(self, sender: WsimClient, ack: dict[str, Any], text: str) -> None:
        self.acked[ack["conv"]].append((ack["seq"], sender.device, text))

    async def collect(self, device: WsimClient, stop: asyncio.Event) -> None:
        while not stop.is_set() or not device.messages.empty():
            try:
                msg = await asyncio.wait_for(device.messages.get(), 0.1)
            except TimeoutError:
                continue
            if msg["kind"] == "text":
                self.received[(device.device, msg["conv"])].append((msg["seq"], msg["body"]["text"]))

    def expected(self, device: WsimClient, convs: list[str]) -> dict[str, list[tuple[int, str]]]:
        return {
            conv: sorted((seq, text) for seq, sender, text in self.acked[conv] if sender != device.device)
            for conv in convs
        }

    def missing(self, devices: dict[str, tuple[WsimClient, list[str]]]) -> int:
        total = 0
        for dev, convs in devices.values():
            for conv, want in self.expected(dev, convs).items():
                got = {s for s, _ in self.received[(dev.device, conv)]}
                total += sum(1 for s, _ in want if s not in got)
        return total

    def report(self, devices: dict[str, tuple[WsimClient, list[str]]]) -> str:
        lines = []
        for dev, convs in devices.values():
            for conv, want in self.expected(dev, convs).items():
                got = {s for s, _ in self.received[(dev.device, conv)]}
                lost = [s for s, _ in want if s not in got]
                if lost:
                    lines.append(
                        f"{dev.device} (node {dev.node}, cursor {dev.ordering.cursor(conv)}): missing {len(lost)} "
                        f"of {len(want)}, first {lost[:8]}; stats {dev.stats}"
                    )
        return "\n".join(lines) or "nothing missing"

    def check(self, devices: dict[str, tuple[WsimClient, list[str]]]) -> None:
        """Each device got every acknowledged message of others, exactly once, in seq order, and nothing else."""
        for dev, convs in devices.values():
            for conv, want in self.expected(dev, convs).items():
                got = [(s, t) for s, t in self.received[(dev.device, conv)] if s in {w for w, _ in want}]
                assert got == want, (
                    f"{dev.device} in {conv}: got {len(got)} of {len(want)}, in order: {got == sorted(got)}"
                )
                extra = [s for s, _ in self.received[(dev.device, conv)] if s not in {w for w, _ in want}]
                assert not extra, f"{dev.device} in {conv}: unexpected seqs {extra[:10]}"


async def wait_until(predicate: Any, timeout: float, what: str, explain: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            detail = f"\n{explain()}" if explain is not None else ""
            raise AssertionError(f"{what}: not within {timeout} s{detail}")
        await asyncio.sleep(0.05)
