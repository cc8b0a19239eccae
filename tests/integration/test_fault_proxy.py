"""The loopback fault proxy against a real echo server: forwarding, delay, resets, truncation, stalls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from experiments.faults.proxy import FaultProxy
from experiments.load.spec import ProxyConfig


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            w.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    yield int(server.sockets[0].getsockname()[1])
    server.close()


async def done(proxy: FaultProxy, w: asyncio.StreamWriter) -> None:
    w.close()
    try:
        await w.wait_closed()
    except (ConnectionError, OSError):
        pass
    await proxy.close()


async def through(
    cfg: ProxyConfig, port: int
) -> tuple[FaultProxy, asyncio.StreamReader, asyncio.StreamWriter]:
    proxy = FaultProxy(cfg, ("127.0.0.1", port))
    listen = await proxy.start()
    r, w = await asyncio.open_connection("127.0.0.1", listen)
    return proxy, r, w


async def test_forwards_bytes_unchanged(echo_port: int) -> None:
    proxy, r, w = await through(ProxyConfig(), echo_port)
    payload = bytes(range(256)) * 400
    w.write(payload)
    await w.drain()
    got = await asyncio.wait_for(r.readexactly(len(payload)), 5)
    assert got == payload
    assert proxy.stats.connections == 1 and proxy.stats.bytes_up >= len(payload)
    await done(proxy, w)


async def test_delay_applies_each_way(echo_port: int) -> None:
    proxy, r, w = await through(ProxyConfig(delay_ms=100), echo_port)
    t = time.monotonic()
    w.write(b"ping")
    await w.drain()
    assert await asyncio.wait_for(r.readexactly(4), 5) == b"ping"
    assert time.monotonic() - t >= 0.19  # 100 ms up + 100 ms down
    await done(proxy, w)


@pytest.mark.parametrize(
    ("cfg", "counter"),
    [
        (ProxyConfig(reset_rate_per_s=1000.0), "resets"),
        (ProxyConfig(truncate_rate_per_s=1000.0), "truncations"),  # forwards a prefix, then aborts
    ],
    ids=["reset", "truncation"],
)
async def test_resets_and_truncations_abort_the_connection(
    cfg: ProxyConfig, counter: str, echo_port: int
) -> None:
    proxy, r, w = await through(cfg, echo_port)
    await asyncio.sleep(0.05)  # the first fault is due within ~1 ms
    w.write(b"x" * 1000)
    await w.drain()
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(r.readexactly(1000), 5)
    assert getattr(proxy.stats, counter) == 1
    await done(proxy, w)


async def test_stall_holds_data_then_releases_it(echo_port: int) -> None:
    proxy, r, w = await through(ProxyConfig(stall_rate_per_s=1000.0, stall_ms=300), echo_port)
    await asyncio.sleep(0.05)
    t = time.monotonic()
    w.write(b"abc")
    await w.drain()
    assert await asyncio.wait_for(r.readexactly(3), 5) == b"abc"
    assert time.monotonic() - t >= 0.29
    assert proxy.stats.stalls >= 1
    await done(proxy, w)
