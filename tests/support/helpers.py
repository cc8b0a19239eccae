from __future__ import annotations

import asyncio
import contextlib
import inspect
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from core.sdk import WsimClient


async def make_friends(a: WsimClient, b: WsimClient) -> str:
    """Befriend and consume the 'friend.accepted' system message on connected sides; return the conv id."""
    await a.befriend(b)
    conv = a.direct_conv(a.user_id, b.user_id)
    for c in (a, b):
        if c.connected.is_set():
            msg = await c.next_message()
            assert msg["kind"] == "system" and msg["conv"] == conv
    return conv


@contextlib.asynccontextmanager
async def friend_pair(url: str, prefix: str) -> AsyncIterator[tuple[WsimClient, WsimClient, str]]:
    """Two registered users who are friends (not connected), their direct conversation; closed on exit."""
    a, b = WsimClient(url), WsimClient(url)
    try:
        for c in (a, b):
            name = f"{prefix}{secrets.token_hex(4)}"
            await c.register(name, "password-123", name)
        await a.befriend(b)
        yield a, b, WsimClient.direct_conv(a.user_id, b.user_id)
    finally:
        await a.close()
        await b.close()


async def collect(client: WsimClient, n: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        out.append(await asyncio.wait_for(client.messages.get(), max(0.01, deadline - time.monotonic())))
    return out


async def eventually(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` (plain or async) until it is truthy; fail after ``timeout`` s of real time."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


def texts(msgs: list[dict[str, Any]]) -> list[str]:
    return [m["body"].get("text", "") for m in msgs]


async def mqtt_credentials(url: str, client: WsimClient, device: str) -> dict[str, Any]:
    """The MQTT username/password the server issues to ``client``'s ``device`` (POST /api/transports/mqtt/credentials)."""
    async with httpx.AsyncClient(base_url=url) as http:
        r = await http.post(
            "/api/transports/mqtt/credentials",
            json={"device": device},
            headers={"Authorization": f"Bearer {client.access_token}"},
        )
    assert r.status_code == 200, r.text
    return dict(r.json())
