"""``wsim`` command line: ``serve`` (one node), ``cluster`` (N local nodes), ``config``, and the commands later
subsystems add."""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from core.config import ConfigError, Settings, load_settings, mask_log_secrets, mask_secrets

if TYPE_CHECKING:
    from core.clock import Clock
    from core.cluster import LocalCluster


def uvicorn_options(settings: Settings, clock: Clock) -> dict[str, Any]:
    """How a node runs under uvicorn (shared by ``serve``, the cluster launcher and the benchmarks); ``clock`` is
    the node's (``app.state.node.clock``), which times the HTTP header deadline too."""
    from core.transport.coalesce import CoalescingWebSocketProtocol
    from core.transport.guard import guarded_http_protocol

    return {
        "host": settings.server.host,
        "port": settings.server.port,
        # websockets' sans-I/O implementation: measured here at ~2x the legacy mode (65k echo msgs/s per core),
        # with one write per connection per loop turn (core/transport/coalesce.py).
        "ws": CoalescingWebSocketProtocol if settings.server.ws_coalesce_writes else "websockets-sansio",
        "loop": "uvloop",
        # httptools plus a deadline and a size bound for request headers (slowloris): core/transport/guard.py.
        "http": guarded_http_protocol(
            settings.server.header_timeout_s, settings.server.max_header_bytes, clock
        ),
        "lifespan": "on",
        "ws_max_size": settings.limits.max_frame_bytes + 1024,
        # Liveness is the protocol's own heartbeat (30 s, reaped after missed beats): no second ping layer.
        "ws_ping_interval": None,
        # Compression is off: it costs CPU per frame and opens the door to decompression bombs.
        "ws_per_message_deflate": False,
        "backlog": 8192,
        "timeout_keep_alive": 30,
        "access_log": settings.server.log_level == "debug",
        "log_level": settings.server.log_level,
    }


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    server: dict[str, Any] = {}
    if getattr(args, "host", None) is not None:
        server["host"] = args.host
    if getattr(args, "port", None) is not None:
        server["port"] = args.port
    if getattr(args, "data_dir", None) is not None:
        server["data_dir"] = args.data_dir
    return {"server": server} if server else {}


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from core.app import create_app

    settings = load_settings(args.config, _overrides(args))
    logging.basicConfig(
        level=settings.server.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    mask_log_secrets()
    app = create_app(settings)
    print(
        f"wsim {settings.server.node}: http://{settings.server.host}:{settings.server.port}/ "
        f"(WebSocket /ws, API docs /docs, data in {settings.data_path})",
        flush=True,
    )
    if args.fd is None:
        uvicorn.run(app, **uvicorn_options(settings, app.state.node.clock))
    else:
        # A listening socket bound by the parent (wsim cluster): no race for the port.
        server = uvicorn.Server(uvicorn.Config(app, **uvicorn_options(settings, app.state.node.clock)))
        server.run(sockets=[socket.socket(fileno=args.fd)])
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    import asyncio

    from core.cluster import LocalCluster, cluster_settings

    settings = load_settings(args.config, _overrides(args))
    settings, notes = cluster_settings(settings, args.bus)
    for note in notes:
        print(f"wsim cluster: {note}", file=sys.stderr)
    cluster = LocalCluster(settings, args.nodes, base_port=settings.server.port)
    return asyncio.run(_run_cluster(cluster))


async def _run_cluster(cluster: LocalCluster) -> int:
    import asyncio
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        urls = await cluster.start()
    except (RuntimeError, TimeoutError) as exc:
        print(f"wsim cluster: {exc}", file=sys.stderr)
        return 1
    bus = cluster.settings.strategies.bus.kind
    print(
        f"wsim cluster: {len(urls)} nodes (bus {bus}, data in {cluster.data_dir}); Ctrl-C stops them",
        flush=True,
    )
    for member in cluster.members:
        print(f"  {member.name}  {member.url}/  (log {member.log_path})", flush=True)
    status = 0
    while not stop.is_set():
        exited = asyncio.ensure_future(cluster.wait_any_exit())
        stopping = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if exited in done:
            member = exited.result()
            code = member.proc.returncode if member.proc else None
            print(f"wsim cluster: {member.name} exited with {code}; the others keep running", flush=True)
            status = 1
            if not any(m.running for m in cluster.members):
                break
        else:
            exited.cancel()
    print("wsim cluster: stopping", flush=True)
    codes = await cluster.stop()
    print("wsim cluster: stopped " + ", ".join(f"{n} ({c})" for n, c in codes.items()), flush=True)
    return status


def cmd_config(args: argparse.Namespace) -> int:
    import yaml

    settings = load_settings(args.config, _overrides(args))
    # Masked twice over: DSN passwords and secret keys by name (mask_secrets), and fields that declare themselves
    # secret through the serialization context (e.g. the bus cluster key).
    dump = mask_secrets(settings.model_dump(mode="json", context={"mask_secrets": True}))
    print(yaml.safe_dump(dump, sort_keys=False, allow_unicode=True))
    return 0


def cmd_tier(args: argparse.Namespace) -> int:
    """Move messages that are due from hot to warm to cold (strategies/store/tiered.py); safe to interrupt and
    run again."""
    import asyncio
    import json

    from core.clock import SystemClock
    from core.metrics import Metrics
    from strategies.context import StrategyContext
    from strategies.store import build_message_store

    settings = load_settings(args.config, _overrides(args))
    if not settings.strategies.store.tiering.enabled:
        print("wsim tier: store.tiering.enabled is false in this configuration", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    mask_log_secrets()

    async def run() -> dict[str, Any]:
        settings.data_path.mkdir(parents=True, exist_ok=True)
        ctx = StrategyContext(SystemClock(), Metrics(), settings.data_path, settings.server.node)
        store: Any = build_message_store(settings.strategies.store, ctx)
        await store.start()
        try:
            report = await store.run_tier_job(args.max_batches)
        finally:
            await store.close()
        result: dict[str, Any] = report.as_dict()
        return result

    print(json.dumps(asyncio.run(run())))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wsim", description="wsim instant-messaging server and testbed")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run one server node")
    serve.add_argument("--config", "-c", help="YAML settings file (WSIM_* environment variables override it)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--data-dir", help="where SQLite files, uploads and the JWT secret live")
    serve.add_argument("--fd", type=int, help=argparse.SUPPRESS)  # a listening socket from wsim cluster
    serve.set_defaults(func=cmd_serve)

    cluster = sub.add_parser(
        "cluster",
        help="run N nodes of one cluster on this machine (consecutive ports)",
        description="Start N nodes as separate processes on consecutive ports from --port (default 8000), "
        "print their URLs, and stop them all on Ctrl-C. Without a network bus in the configuration the Redis "
        "bus and presence registry at 127.0.0.1:6379 are used.",
    )
    cluster.add_argument("--nodes", "-n", type=int, default=3)
    cluster.add_argument("--config", "-c", help="YAML settings file shared by every node")
    cluster.add_argument(
        "--bus", choices=["redis", "rabbitmq", "mqtt"], help="override the configured bus kind"
    )
    cluster.add_argument("--host")
    cluster.add_argument("--port", type=int, help="port of the first node (0: any free ports)")
    cluster.add_argument("--data-dir", help="data directory shared by the nodes")
    cluster.set_defaults(func=cmd_cluster)

    tier = sub.add_parser("tier", help="move old messages hot -> warm -> cold (store.tiering); resumable")
    tier.add_argument("--config", "-c")
    tier.add_argument("--data-dir")
    tier.add_argument("--max-batches", type=int, default=None, help="stop after this many batches")
    tier.set_defaults(func=cmd_tier)

    show = sub.add_parser("config", help="print the resolved settings")
    show.add_argument("--config", "-c")
    show.set_defaults(func=cmd_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except ConfigError as exc:
        print(f"wsim: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
