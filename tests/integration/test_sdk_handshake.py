"""Regression (found by the fault campaign, client_drop): a WebSocket handshake response cut off by the network
raised ``InvalidMessage``, which the SDK's reconnect loop did not catch, so the device never reconnected."""

from __future__ import annotations

import asyncio
import contextlib

from core.sdk import WsimClient


async def test_a_truncated_handshake_response_is_retried_not_fatal() -> None:
    writers: list[
        asyncio.StreamWriter
    ] = []  # closed at the end: a handler still reading must not outlive the loop

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.read(100)
        writer.write(b"HTTP/1.1 101 Swi")  # the response stops here: the connection is aborted
        await writer.drain()
        writer.transport.abort()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    server = await asyncio.start_server(cut, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = WsimClient(f"http://127.0.0.1:{port}", backoff_base_s=0.02, backoff_cap_s=0.05)
    client.access_token = "token"
    try:
        connecting = asyncio.ensure_future(client.connect(wait_synced=False, timeout=1.0))
        await asyncio.sleep(0.5)
        assert not connecting.done()  # still trying: the loop survived every cut handshake
        assert client.stats.connect_failures >= 2
        connecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await connecting
    finally:
        await client.close()
        server.close()
        await server.wait_closed()
        for w in writers:
            w.close()
            with contextlib.suppress(ConnectionError):
                await w.wait_closed()
