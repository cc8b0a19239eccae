"""Shutdown closes every component within a deadline: one that hangs is abandoned (and logged), the rest close."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

import core.app
from core.app import build_node, stop_node
from tests.support.server import settings_for_test


async def test_a_component_that_never_closes_does_not_hold_the_shutdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    node = build_node(settings_for_test(tmp_path))
    closed: list[str] = []

    async def hang() -> None:
        await asyncio.Event().wait()

    async def users_closed() -> None:
        closed.append("users")

    monkeypatch.setattr(core.app, "CLOSE_DEADLINE_S", 0.2)
    monkeypatch.setattr(node.messages_store, "close", hang)
    monkeypatch.setattr(node.users_store, "close", users_closed)
    with caplog.at_level(logging.ERROR, logger="core.app"):
        await asyncio.wait_for(stop_node(node), 5)
    assert closed == ["users"]  # the component after the hung one still closed
    assert any("took longer than" in r.getMessage() for r in caplog.records)
