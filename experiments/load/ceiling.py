"""The same-stack ceiling: a bare echo and a bare broadcast server on wsim's own stack, and their load.

``python -m experiments.load.ceiling --port P`` serves ``/echo`` (every text frame straight back) and
``/broadcast`` (every text frame to every open ``/broadcast`` connection, the sender included) with FastAPI under
uvicorn, run with :func:`core.cli.uvicorn_options` (``websockets-sansio``, uvloop, httptools, the same limits) and
the same garbage-collector tuning as a wsim node. Nothing else runs in the process, so its CPU per frame is the
floor any message path on this stack pays: ``experiments/bench_core.py`` divides wsim's CPU per message by it.

:class:`CeilingLoad` is the client side, run inside a swarm worker: connections on the swarm's sans-I/O protocol
(no task per connection), a closed loop of ``window`` frames in flight per sender. A sender's frame completes when
it comes back to it (the echo, or its own copy of the broadcast); every frame received counts as a delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse
from hdrh.histogram import HdrHistogram
from websockets.uri import parse_uri

from experiments.load.swarm import HIST_MAX_US, _WsProtocol, new_histogram


def create_app() -> FastAPI:
    members: set[WebSocket] = set()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # A wsim node's server.gc_tuning (core/app.py), so the comparison is like with like.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        yield

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.websocket("/echo")
    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await ws.send_text(await ws.receive_text())

    @app.websocket("/broadcast")
    async def broadcast(ws: WebSocket) -> None:
        await ws.accept()
        members.add(ws)
        try:
            while True:
                text = await ws.receive_text()
                for member in list(members):
                    try:
                        await member.send_text(text)
                    except (WebSocketDisconnect, RuntimeError, OSError):
                        members.discard(member)
        except WebSocketDisconnect:
            pass
        finally:
            members.discard(ws)

    return app


def serve(port: int) -> None:
    import uvicorn

    from core.cli import uvicorn_options
    from core.clock import SystemClock
    from core.config import load_settings

    settings = load_settings(None, {"server": {"host": "127.0.0.1", "port": port, "log_level": "warning"}})
    uvicorn.run(create_app(), **uvicorn_options(settings, SystemClock()))


@dataclass
class _Counters:
    """What :class:`_WsProtocol` counts on its client."""

    connect_failures: int = 0
    frames_out: int = 0


class _CeilingConn:
    """One connection of the ceiling load: the client interface :class:`_WsProtocol` calls back."""

    __slots__ = ("counters", "load", "opened", "proto", "tag")

    def __init__(self, load: CeilingLoad, tag: bytes) -> None:
        self.load = load
        self.tag = tag
        self.counters = load.counters
        self.proto: _WsProtocol | None = None
        self.opened: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def on_open(self, proto: _WsProtocol) -> None:
        self.proto = proto
        if not self.opened.done():
            self.opened.set_result(True)

    def on_closed(self, proto: _WsProtocol, code: int) -> None:
        self.proto = None
        self.load.closed += 1
        if not self.opened.done():
            self.opened.set_result(False)

    def on_text(self, data: bytes | bytearray | memoryview) -> None:
        load = self.load
        load.delivered += 1
        raw = bytes(data)
        if raw.startswith(self.tag):  # our own frame back: one round trip done
            t_ns = int(raw[len(self.tag) :].split(b":", 1)[0])
            load.rtt.record_value(max(1, min(HIST_MAX_US, (time.time_ns() - t_ns) // 1000)))
            load.completed += 1
            load.inflight -= 1
            if load.sending and time.monotonic() < load.end:
                self.send()
            elif load.inflight == 0:
                load.drained.set()

    def send(self) -> None:
        if self.proto is not None:
            head = self.tag + f"{time.time_ns()}:".encode()
            self.proto.send(head + b"x" * max(0, self.load.text_bytes - len(head)))
            self.load.sent += 1
            self.load.inflight += 1


class CeilingLoad:
    """The ceiling's load in one swarm worker: connections per target path, closed-loop runs."""

    def __init__(self, worker: int, source_addrs: list[str]) -> None:
        self.worker = worker
        self.source_addrs = source_addrs
        self.counters = _Counters()
        self.conns: dict[str, list[_CeilingConn]] = {}
        self.closed = 0
        self._reset()

    def _reset(self) -> None:
        self.sent = self.completed = self.delivered = self.inflight = 0
        self.rtt: HdrHistogram = new_histogram()
        self.sending = False
        self.end = 0.0
        self.text_bytes = 48
        self.drained = asyncio.Event()  # set when the last frame in flight is back after the load stopped

    async def connect(self, name: str, url: str, count: int, timeout_s: float = 60.0) -> dict[str, Any]:
        """Open ``count`` connections to ``url`` under ``name`` (e.g. "echo"), 50 at a time."""
        loop = asyncio.get_running_loop()
        host, port = parse_uri(url).host, parse_uri(url).port
        conns = self.conns.setdefault(name, [])
        new = [_CeilingConn(self, f"{self.worker}:{name}:{len(conns) + i}:".encode()) for i in range(count)]
        sem = asyncio.Semaphore(50)

        async def open_one(i: int, c: _CeilingConn) -> None:
            addr = self.source_addrs[i % len(self.source_addrs)] if self.source_addrs else None
            async with sem:
                try:
                    await loop.create_connection(
                        lambda: _WsProtocol(c, url),  # type: ignore[arg-type]  # duck-typed client
                        host,
                        port,
                        local_addr=(addr, 0) if addr else None,
                    )
                    await asyncio.wait_for(asyncio.shield(c.opened), timeout_s)
                except (OSError, TimeoutError):
                    self.counters.connect_failures += 1

        await asyncio.gather(*(open_one(i, c) for i, c in enumerate(new)))
        conns.extend(new)
        return {"connected": sum(1 for c in conns if c.proto is not None)}

    async def run(
        self,
        name: str,
        senders: int,
        window: int,
        duration_s: float,
        start_at_ns: int,
        text_bytes: int = 48,
        drain_s: float = 10.0,
    ) -> dict[str, Any]:
        """From ``start_at_ns`` the first ``senders`` connections keep ``window`` frames in flight for
        ``duration_s``; then wait (up to ``drain_s``) for the frames in flight to come back."""
        self._reset()
        self.text_bytes = text_bytes
        await asyncio.sleep(max(0.0, (start_at_ns - time.time_ns()) / 1e9))
        t0 = time.monotonic()
        self.end = t0 + duration_s
        self.sending = True
        for c in self.conns.get(name, [])[:senders]:
            for _ in range(window):
                c.send()
        await asyncio.sleep(max(0.0, self.end - time.monotonic()))
        self.sending = False
        if self.inflight > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.drained.wait(), drain_s)
        return {
            "sent": self.sent,
            "completed": self.completed,
            "delivered": self.delivered,
            "lost_in_flight": self.inflight,
            "elapsed_s": time.monotonic() - t0,
            "rtt_hist": self.rtt.encode().decode(),
        }

    async def close(self) -> None:
        for conns in self.conns.values():
            for c in conns:
                if c.proto is not None:
                    c.proto.close(1000)
        deadline = time.monotonic() + 5.0
        total = sum(len(v) for v in self.conns.values())
        # polling: hundreds of protocols close independently, there is no single event to wait on
        while self.closed < total and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        for conns in self.conns.values():
            for c in conns:
                if c.proto is not None:
                    c.proto.abort()
        self.conns.clear()


class CeilingServer:
    """The ceiling server as its own process on a free port; ready when ``/healthz`` answers."""

    def __init__(self, log_path: Path) -> None:
        from experiments.harness.server import free_port

        self.port = free_port()
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    async def start(self, timeout_s: float = 30.0) -> None:
        from experiments.harness.server import spawn_python, wait_healthy

        self.proc = await spawn_python(["experiments.load.ceiling", "--port", str(self.port)], self.log_path)
        await wait_healthy(
            self.proc, f"http://127.0.0.1:{self.port}", "ceiling server", self.log_path, timeout_s
        )

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(description="bare echo and broadcast server on wsim's stack")
    p.add_argument("--port", type=int, required=True)
    serve(p.parse_args().port)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
