"""Schemathesis over the transports' HTTP endpoints (polling, MQTT credentials, the transport list) with every
transport enabled: no server error, no undocumented status, responses that match their schemas. The rest of the
REST API is fuzzed by test_rest_fuzz.py."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx
import pytest

from experiments.transports.clients import server_transports
from tests.conftest import ServerFactory
from tests.support.services import namespace, require_service

CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.mark.slow
async def test_transport_endpoints_fuzz(start_server: ServerFactory) -> None:
    require_service("mosquitto")
    transports = server_transports(namespace("wsimfz"))
    for t in transports:
        if t["kind"] == "long_poll":
            t["hold_s"] = 0.2  # fuzzed polls are held; keep them short
    srv = await start_server({"strategies": {"transports": transports}})
    async with httpx.AsyncClient(base_url=srv.url) as http:
        r = await http.post("/api/auth/register", json={"username": "fuzzer", "password": "password-123"})
        token = r.json()["access_token"]
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file", str(CONFIG),
        "run", f"{srv.url}/openapi.json",
        "--checks", "all",
        "-H", f"Authorization: Bearer {token}",
        "--include-path-regex", "^/api/(poll|transports)",
        "--max-examples", os.environ.get("WSIM_FUZZ_EXAMPLES", "25"),
        "--workers", "1",
        "--seed", "20261127",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=600)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]
    assert "Server error" not in text
