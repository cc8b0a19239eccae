"""The experiment arms behave as their docstrings promise, on a real server."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.sdk import WsimClient
from tests.conftest import ServerFactory
from tests.support.helpers import collect, make_friends, texts
from tests.support.server import node_fake_clock


def cache_counts(metrics: bytes) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(metrics.decode()):
        if family.name in ("wsim_cache_hits", "wsim_cache_misses"):
            kind = family.name.rsplit("_", 1)[1]
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    key = (sample.labels["tier"], kind)
                    out[key] = out.get(key, 0) + sample.value
    return out


async def pair(url: str, clients: list[WsimClient], prefix: str) -> tuple[WsimClient, WsimClient, str]:
    a, b = WsimClient(url), WsimClient(url)
    clients += [a, b]
    await a.register(f"{prefix}_a", "password-123")
    await b.register(f"{prefix}_b", "password-123")
    await a.connect()
    await b.connect()
    conv = await make_friends(a, b)
    return a, b, conv


@pytest.mark.parametrize(
    "strategies",
    [
        {"cache": {"kind": "off"}},
        {"retry": {"kind": "none", "ack_timeout_s": 1.0}},
        {"retry": {"kind": "fixed", "interval_s": 0.5, "max_retries": 2}},
        {"dedup": {"kind": "off"}},
    ],
    ids=["cache-off", "retry-none", "retry-fixed", "dedup-off"],
)
async def test_chat_works_under_each_arm(
    start_server: ServerFactory, clients: list[WsimClient], strategies: dict[str, object]
) -> None:
    srv = await start_server({"strategies": strategies})
    a, b, conv = await pair(srv.url, clients, "arm")
    for i in range(10):
        await a.send(conv, f"m{i}")
    assert texts(await collect(b, 10)) == [f"m{i}" for i in range(10)]
    if strategies.get("cache") == {"kind": "off"}:
        tiers = cache_counts(await a.request("GET", "/metrics"))
        assert tiers.get(("off", "misses"), 0) > 0 and ("l1", "hits") not in tiers


async def test_ack_off_is_fire_and_forget(start_server: ServerFactory, clients: list[WsimClient]) -> None:
    srv = await start_server({"strategies": {"ack": {"kind": "off"}}})
    a, b, conv = await pair(srv.url, clients, "ackoff")
    assert a.ack_mode == "off"
    assert await a.send(conv, "no ack for me") is None
    assert (await b.next_message())["body"]["text"] == "no ack for me"
    seen: list[dict[str, Any]] = []
    a.listeners.append(seen.append)
    await b.read(conv, 2)
    # b's frames are handled in order, and a first receipt is sent at once: one for the read would come first
    await b.send(conv, "marker")
    assert (await a.next_message())["body"]["text"] == "marker"
    assert [f for f in seen if f["type"] == "receipt"] == []
    sent = [
        sample.value
        for family in text_string_to_metric_families((await a.request("GET", "/metrics")).decode())
        for sample in family.samples
        if sample.name == "wsim_acks_total" and sample.labels.get("state") == "sent"
    ]
    assert sum(sent) == 0


async def test_dedup_off_stores_every_resend(start_server: ServerFactory, clients: list[WsimClient]) -> None:
    srv = await start_server({"strategies": {"dedup": {"kind": "off"}}})
    a, b, conv = await pair(srv.url, clients, "dedupoff")
    first = await a.send(conv, "twice", cmid="same-cmid")
    second = await a.send(conv, "twice", cmid="same-cmid")
    assert first is not None and second is not None
    assert first["id"] != second["id"] and second["seq"] == first["seq"] + 1 and not second["duplicate"]
    assert texts(await collect(b, 2)) == ["twice", "twice"]  # what an IM without de-duplication shows


async def test_dedup_memory_window_and_durable_key(
    start_server: ServerFactory, clients: list[WsimClient]
) -> None:
    clock = node_fake_clock()
    srv = await start_server({"strategies": {"dedup": {"kind": "memory", "window_s": 20}}}, clock=clock)
    a, b, conv = await pair(srv.url, clients, "window")
    first = await a.send(conv, "once", cmid="late-resend")
    clock.advance(
        30
    )  # outside the window (and inside the heartbeat's 60 s): the durable key still recognises it
    again = await a.send(conv, "once", cmid="late-resend")
    assert first is not None and again is not None
    assert (again["id"], again["seq"], again["duplicate"]) == (first["id"], first["seq"], True)
    assert texts(await collect(b, 1)) == ["once"]
