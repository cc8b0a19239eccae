from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

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


async def collect(client: WsimClient, n: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        out.append(await asyncio.wait_for(client.messages.get(), max(0.01, deadline - time.monotonic())))
    return out


async def eventually(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


def texts(msgs: list[dict[str, Any]]) -> list[str]:
    return [m["body"].get("text", "") for m in msgs]
