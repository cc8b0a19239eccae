"""Schemathesis over /openapi.json against a real server: every phase (examples, coverage, fuzzing, stateful) and
every check. Pass means no server error, no undocumented status or content type, responses that match their
schemas, and the Allow/auth rules; the few domain refusals a schema cannot express are listed, with the reason,
in tests/fuzz/schemathesis.toml."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerFactory

CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.mark.slow
async def test_schemathesis_finds_nothing(start_server: ServerFactory) -> None:
    srv = await start_server({"auth": {"login_failures_per_minute": 1_000_000}})
    async with httpx.AsyncClient(base_url=srv.url) as http:
        r = await http.post("/api/auth/register", json={"username": "admin", "password": "password-123"})
        token = r.json()["access_token"]
    cli = Path(sys.executable).with_name("schemathesis")
    log_dir = Path("test-output")
    log_dir.mkdir(exist_ok=True)
    for attempt in (1, 2):
        proc = await asyncio.create_subprocess_exec(
            str(cli),
            "--config-file",
            str(CONFIG),
            "run",
            f"{srv.url}/openapi.json",
            "--checks",
            "all",
            # A file download may carry a signed link instead of the header: a bad signature without the header is
            # 403 (docs/protocol.md), which this check reads as "missing header accepted". The per-operation switch
            # in schemathesis.toml is overridden by --checks all; missing credentials are tested in test_security.
            "--exclude-checks",
            "missing_required_header",
            "-H",
            f"Authorization: Bearer {token}",
            "--max-examples",
            os.environ.get("WSIM_FUZZ_EXAMPLES", "25"),
            "--workers",
            "1",
            "--exclude-path-regex",
            "/api/auth/logout",  # it would revoke the token the run uses (tested elsewhere)
            "--seed",
            "20261127",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1"},
        )
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=600)
        text = out.decode(errors="replace")
        (log_dir / f"schemathesis-rest-{attempt}.log").write_text(text)
        found_failures = "Failures:" in text or "Server error" in text
        # A crash inside schemathesis itself (seen: CPython 3.11's "AST constructor recursion depth mismatch" in
        # Hypothesis' lambda printing) is not a finding about the API: run once more before judging.
        tool_crash_only = proc.returncode != 0 and not found_failures and "Runtime Error" in text
        if not tool_crash_only:
            break
    assert proc.returncode == 0, text[-6000:]
    assert "Server error" not in text
