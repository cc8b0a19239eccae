"""A loopback TCP fault proxy: clients connect to it, it connects to the server, and it misbehaves on purpose.

Per connection and per direction it can delay every chunk (``delay_ms`` +- uniform ``jitter_ms``, order kept),
stall (stop forwarding both ways for ``stall_ms``), reset (abort both sides: the peers see a TCP RST) and
truncate (forward a random prefix of a chunk, then abort), each as a Poisson process per connection.

Written by hand rather than with toxiproxy because toxiproxy is a Go binary outside the package registries this
project may use; the behaviours above are the subset of its toxics the experiments need.

Run: ``python -m experiments.faults.proxy --listen-port P --target-port Q --config '<ProxyConfig JSON>'``.
On SIGTERM/SIGINT it writes its counters to ``--stats-file`` and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from experiments.load.spec import ProxyConfig


@dataclass
class ProxyStats:
    connections: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    stalls: int = 0
    resets: int = 0
    truncations: int = 0
    upstream_failures: int = 0


class _Pipe:
    """One client connection and its upstream: two directional pumps sharing the fault clock."""

    def __init__(
        self, proxy: FaultProxy, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        self.proxy = proxy
        self.cfg = proxy.cfg
        self.rng = random.Random(proxy.rng.random())
        self.client_r, self.client_w = client_r, client_w
        self.stall_until = 0.0
        self.dead = False
        now = time.monotonic()
        self.next_stall = now + self._exp(self.cfg.stall_rate_per_s)
        self.next_reset = now + self._exp(self.cfg.reset_rate_per_s)
        self.next_truncate = now + self._exp(self.cfg.truncate_rate_per_s)

    def _exp(self, rate: float) -> float:
        return self.rng.expovariate(rate) if rate > 0 else float("inf")

    async def run(self) -> None:
        stats = self.proxy.stats
        stats.connections += 1
        try:
            local = (self.proxy.next_source(), 0)
            up_r, up_w = await asyncio.open_connection(*self.proxy.target, local_addr=local)
        except OSError:
            stats.upstream_failures += 1
            self.client_w.transport.abort()
            return
        self.up_w = up_w
        self.proxy.pipes.add(self)
        try:
            await asyncio.gather(
                self._pump(self.client_r, up_w, up=True), self._pump(up_r, self.client_w, up=False)
            )
        finally:
            self.proxy.pipes.discard(self)
            for w in (self.client_w, up_w):
                w.close()

    def abort(self) -> None:
        self._abort()

    def _abort(self) -> None:
        if not self.dead:
            self.dead = True
            self.client_w.transport.abort()
            self.up_w.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, up: bool) -> None:
        cfg, stats = self.cfg, self.proxy.stats
        try:
            while not self.dead:
                chunk = await reader.read(65536)
                if not chunk:
                    with contextlib.suppress(OSError, RuntimeError):
                        if writer.can_write_eof():
                            writer.write_eof()
                    return
                now = time.monotonic()
                if now >= self.next_reset:
                    stats.resets += 1
                    self._abort()
                    return
                if now >= self.next_truncate:
                    stats.truncations += 1
                    writer.write(chunk[: self.rng.randrange(0, len(chunk))])
                    with contextlib.suppress(OSError, RuntimeError):
                        await writer.drain()
                    self._abort()
                    return
                if now >= self.next_stall:
                    stats.stalls += 1
                    self.stall_until = now + cfg.stall_ms / 1000
                    self.next_stall = self.stall_until + self._exp(cfg.stall_rate_per_s)
                delay = cfg.delay_ms / 1000
                if cfg.jitter_ms:
                    delay = max(0.0, delay + self.rng.uniform(-cfg.jitter_ms, cfg.jitter_ms) / 1000)
                wait = max(delay, self.stall_until - now)
                if wait > 0:
                    await asyncio.sleep(wait)  # per-direction FIFO: delaying a chunk delays those behind it
                writer.write(chunk)
                if up:
                    stats.bytes_up += len(chunk)
                else:
                    stats.bytes_down += len(chunk)
                await writer.drain()
        except (OSError, RuntimeError, asyncio.IncompleteReadError):
            self._abort()


class FaultProxy:
    def __init__(
        self, cfg: ProxyConfig, target: tuple[str, int], source_addrs: list[str] | None = None
    ) -> None:
        self.cfg = cfg
        self.target = target
        self.rng = random.Random(cfg.seed)
        self.stats = ProxyStats()
        self.sources = source_addrs or ["127.0.0.1"]
        self._n = 0
        self._server: asyncio.Server | None = None
        self.pipes: set[_Pipe] = set()

    def next_source(self) -> str:
        self._n += 1
        return self.sources[self._n % len(self.sources)]

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._accept, host, port, backlog=8192)
        return int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        # A pipe still open when the proxy process ends is cancelled by asyncio.run; Python 3.11's start_server
        # then calls task.exception() on the cancelled handler and logs a CancelledError traceback per pipe
        # (89 of them in one heartbeat_interval run). Nothing awaits this task: a cancelled pipe simply ends.
        with contextlib.suppress(asyncio.CancelledError):
            await _Pipe(self, r, w).run()

    async def close(self) -> None:
        for pipe in list(self.pipes):
            pipe.abort()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)


async def _main(args: argparse.Namespace) -> None:
    cfg = ProxyConfig.model_validate_json(args.config)
    sources = args.sources.split(",") if args.sources else None
    proxy = FaultProxy(cfg, ("127.0.0.1", args.target_port), sources)
    port = await proxy.start(port=args.listen_port)
    print(json.dumps({"listening": port}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await proxy.close()
    if args.stats_file:
        _write_stats(Path(args.stats_file), proxy.stats)


def _write_stats(path: Path, stats: ProxyStats) -> None:
    path.write_text(json.dumps(asdict(stats)), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="loopback TCP fault proxy")
    p.add_argument("--listen-port", type=int, default=0)
    p.add_argument("--target-port", type=int, required=True)
    p.add_argument("--config", default="{}", help="ProxyConfig as JSON")
    p.add_argument("--sources", default="", help="comma-separated source addresses for upstream connections")
    p.add_argument("--stats-file", default="")
    args = p.parse_args(argv)
    try:
        import uvloop

        uvloop.run(_main(args))
    except ImportError:  # pragma: no cover
        asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
