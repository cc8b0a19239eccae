"""An unmodified @stomp/stompjs client under Node logs in over /stomp, receives a message from a native WebSocket
user, acknowledges it (client-individual) and answers with a receipt-confirmed SEND. The npm packages are installed
once into a cache outside the repository (tests/support/stompjs/package.json)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from core.sdk import WsimClient
from experiments.transports.clients import Account, make_device
from tests.conftest import ServerFactory, unique_name
from tests.support.services import unavailable

HERE = Path(__file__).resolve().parents[1] / "support" / "stompjs"
CACHE = Path(os.environ.get("WSIM_NPM_CACHE", Path.home() / ".cache" / "wsim-stompjs"))


async def _install() -> Path:
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is not installed")
    CACHE.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "client.mjs"):
        shutil.copy(HERE / name, CACHE / name)
    if not (CACHE / "node_modules" / "@stomp" / "stompjs").exists():
        proc = await asyncio.create_subprocess_exec(
            "npm", "install", "--no-audit", "--no-fund", "--silent", cwd=CACHE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 300)
        if proc.returncode != 0:
            unavailable(f"npm install failed: {out.decode()[-2000:]}")
    return CACHE


@pytest.mark.slow
async def test_stompjs_client(start_server: ServerFactory) -> None:
    cache = await _install()
    srv = await start_server({"strategies": {"transports": [{"kind": "websocket"}, {"kind": "stomp"}]}})
    a, b = WsimClient(srv.url), WsimClient(srv.url)
    for c in (a, b):
        name = unique_name("js")
        await c.register(name, "password-123", name)
    await a.befriend(b)
    conv = WsimClient.direct_conv(a.user_id, b.user_id)
    assert a.access_token is not None and b.access_token is not None
    alice = make_device("websocket", srv.url, Account(a.user_id, a.access_token))
    await alice.open()
    alice.discard_messages()  # friend.accepted, released by the first sync
    node = await asyncio.create_subprocess_exec(
        "node", "client.mjs", srv.url.replace("http", "ws") + "/stomp", b.access_token, conv,
        cwd=cache, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert node.stdout is not None
    lines: list[str] = []
    try:
        while "READY" not in lines:
            line = (await asyncio.wait_for(node.stdout.readline(), 20)).decode().strip()
            assert line and not line.startswith(("ERROR", "TIMEOUT")), [*lines, line]
            lines.append(line)
        sent = await alice.send(conv, "ping from python")
        got = await alice.next_message(timeout=15)
        assert (
            got["body"]["text"] == "pong from stompjs" and got["cmid"] == "js-1" and got["from"] == b.user_id
        )
        receipt = await alice.next_event("receipt", lambda e: (e.get("delivered") or 0) >= sent["seq"])
        assert receipt["user"] == b.user_id
        out, _ = await asyncio.wait_for(node.communicate(), 20)
        lines += out.decode().split()
        assert node.returncode == 0, lines
        assert lines[0] == f"CONNECTED {b.user_id} 1.2" and "RECEIPT" in lines
    finally:
        if node.returncode is None:
            node.kill()
            await node.wait()
        await alice.close()
        await a.close()
        await b.close()
