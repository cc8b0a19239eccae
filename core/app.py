"""The one composition root: builds every strategy from the settings through its registry, wires the services,
and exposes them as a FastAPI app. Nothing else in ``core`` names a concrete strategy."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from core import __version__, faultpoints
from core.api import admin, auth, conversations, files, groups, ops, search, transports, users
from core.api.docs import mount_api_docs
from core.clientfaults import CLIENT_FAULTS, install_uvicorn_filter
from core.clock import Clock, SystemClock
from core.config import Settings
from core.errors import CloseCode, ErrorCode, ErrorOut, WsimError, http_status
from core.gcpolicy import ConnectionFreezer
from core.hub import Hub
from core.metrics import Metrics
from core.node import Node
from core.routing import Router
from core.services.accounts import AccountService
from core.services.files import FileService
from core.services.messaging import MessagingService
from core.services.presence import PresenceService
from core.services.social import SocialService
from core.sweeper import Sweeper
from core.transport.guard import AddressSlots
from core.transport.port import NodeAdapter
from core.web_client import mount_web_client
from strategies import ack, bus, cache, dedup, ids, presence, retry, timeline
from strategies import files as file_strategies
from strategies import store as stores
from strategies import transport as transport_strategies
from strategies.context import StrategyContext
from strategies.store.base import StoreUnavailable
from strategies.transport.base import NodePort

log = logging.getLogger(__name__)


def jwt_secret(settings: Settings) -> bytes:
    """The configured secret, or one generated once and kept (0600) in the data directory."""
    if settings.auth.jwt_secret:
        return settings.auth.jwt_secret.encode()
    path = settings.data_path / "jwt.secret"
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(value)
    return value


def build_node(settings: Settings, clock: Clock | None = None) -> Node:
    clock = clock or faultpoints.clock_from_env() or SystemClock()
    if faultpoints.ARMED is not None:
        faultpoints.ARMED.clock = clock
    metrics = Metrics()
    data_dir = settings.data_path
    data_dir.mkdir(parents=True, exist_ok=True)
    ctx = StrategyContext(clock=clock, metrics=metrics, data_dir=data_dir, node_name=settings.server.node)
    s = settings.strategies

    id_gen = ids.REGISTRY.create(s.ids, ctx)
    users_store = stores.USER_STORES.create(s.store.users, ctx)
    messages_store = stores.build_message_store(s.store, ctx)
    cache_impl = cache.REGISTRY.create(s.cache, ctx)
    dedup_impl = dedup.REGISTRY.create(s.dedup, ctx)
    bus_impl = bus.REGISTRY.create(s.bus, ctx)
    presence_registry = presence.REGISTRY.create(s.presence, ctx)
    file_storage = file_strategies.REGISTRY.create(s.files, ctx)
    ack_policy = ack.REGISTRY.create(s.ack, ctx)
    retry_policy = retry.REGISTRY.create(s.retry, ctx)
    timeline_impl = timeline.REGISTRY.create(s.store.timeline, ctx, messages_store, id_gen)

    secret = jwt_secret(settings)
    hub = Hub(
        settings.server.node,
        clock,
        metrics,
        settings.limits.max_connections_per_user,
        settings.sync.resync_spread_s,
    )
    router = Router(bus_impl, presence_registry, metrics, settings.server.node, hub.deliver)
    accounts = AccountService(users_store, id_gen, clock, settings.auth, secret, cache_impl, router)
    social = SocialService(users_store, messages_store, id_gen, clock, cache_impl, router, settings.limits)
    messaging = MessagingService(
        messages_store,
        users_store,
        social,
        router,
        id_gen,
        dedup_impl,
        ack_policy,
        clock,
        metrics,
        settings.limits,
        settings.sync,
        timeline_impl,
    )
    social.system = messaging
    presence_service = PresenceService(presence_registry, social, router, settings.server.node)
    file_service = FileService(users_store, file_storage, social, id_gen, clock, settings.limits, secret)
    sweeper = Sweeper(
        hub,
        social,
        messages_store,
        clock,
        metrics,
        settings.sync.sweep_interval_s,
        settings.sync.sweep_grace_s,
        settings.sync.sweep_batch,
    )
    return Node(
        settings=settings,
        clock=clock,
        metrics=metrics,
        ids=id_gen,
        users_store=users_store,
        messages_store=messages_store,
        cache=cache_impl,
        dedup=dedup_impl,
        bus=bus_impl,
        presence_registry=presence_registry,
        file_storage=file_storage,
        ack=ack_policy,
        retry=retry_policy,
        hub=hub,
        router=router,
        accounts=accounts,
        social=social,
        messaging=messaging,
        presence=presence_service,
        files=file_service,
        address_slots=AddressSlots(settings.limits.max_connections_per_address),
        sweeper=sweeper,
        secret=secret,
    )


async def start_node(node: Node) -> None:
    await node.users_store.start()
    await node.messages_store.start()
    await node.messaging.timeline.start()
    await node.cache.start()
    await node.dedup.start()
    await node.presence_registry.start(node.name, node.hub.on_bus_gap, node.presence.changed)
    leased = await node.presence_registry.lease_node_id(node.ids.node_id_count, node.ids.set_node_id)
    if (
        leased is not None
    ):  # a shared registry hands out cluster-unique ids; otherwise the configured one stays
        node.ids.set_node_id(leased)
    await node.file_storage.start()
    await node.bus.start(node.name, node.hub.on_envelope, node.hub.on_bus_gap)
    node.sweeper.start()
    node.started = True
    if node.settings.server.gc_tuning:
        # Measured: at 10k connections full collections gave 110 ms p99 spikes; freezing the start-up heap and
        # collecting gen0 less often brought p99 to ~1 ms. Cycles are still collected.
        gc.collect()
        gc.freeze()
        gc.set_threshold(node.settings.server.gc_gen0_threshold, 20, 100)
        every = node.settings.server.gc_freeze_every_connections
        if every > 0:
            node.gc_freezer = ConnectionFreezer(
                every,
                node.clock,
                node.settings.server.gc_young_interval_s,
                on_freeze=node.metrics.gc_freezes.inc,
            )
            node.gc_freezer.start()
    _watch_gc(node)


def _watch_gc(node: Node) -> None:
    """Record every collector pause in ``wsim_gc_pause_seconds`` (a pause holds the loop and every socket), and the
    CPU the collection itself used in ``wsim_gc_pause_cpu_seconds``: a pause much longer than its CPU is the thread
    being descheduled (or waiting for the GIL) mid-collection, not the collector's work."""
    pauses = [node.metrics.gc_pause_seconds.labels(str(g)) for g in range(3)]
    cpu = [node.metrics.gc_pause_cpu_seconds.labels(str(g)) for g in range(3)]
    longest = [node.metrics.gc_pause_max_seconds.labels(str(g)) for g in range(3)]
    started = [0.0, 0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0], started[1] = time.perf_counter(), time.thread_time()
        else:
            pause = time.perf_counter() - started[0]
            gen = info["generation"]
            pauses[gen].observe(pause)
            cpu[gen].observe(time.thread_time() - started[1])
            longest[gen].value = max(longest[gen].value, pause)

    gc.callbacks.append(on_gc)
    node.gc_callback = on_gc


# Each component gets this long to close at shutdown (its own deadlines are shorter: e.g. 5 s per MySQL pool).
CLOSE_DEADLINE_S = 10.0


async def stop_node(node: Node) -> None:
    if node.gc_freezer is not None:
        node.gc_freezer.stop()
        node.gc_freezer = None
    if node.gc_callback is not None and node.gc_callback in gc.callbacks:
        gc.callbacks.remove(node.gc_callback)
        node.gc_callback = None
    for link in list(node.hub.all_links()):
        link.close(CloseCode.GOING_AWAY, "server shutting down")
    # give writers a moment to send the close frames
    for _ in range(50):
        if node.hub.connection_count == 0:
            break
        await asyncio.sleep(0.02)
    for closer in (
        node.sweeper.close,
        node.messaging.close,
        node.bus.close,
        node.file_storage.close,
        node.presence_registry.close,
        node.dedup.close,
        node.cache.close,
        node.messaging.timeline.close,
        node.messages_store.close,
        node.users_store.close,
    ):
        try:
            async with asyncio.timeout(CLOSE_DEADLINE_S):
                await closer()
        except TimeoutError:
            # A backend that stops answering must not hold the shutdown (an operator's SIGTERM) forever.
            log.error("closing %s took longer than %.0f s; abandoned", closer, CLOSE_DEADLINE_S)
        except Exception:
            log.exception("error while closing %s", closer)
    node.started = False


def _error(
    code: ErrorCode, message: str, status: int | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code.value, "message": message}},
        status_code=status or http_status(code),
        headers=headers,
    )


_STATUS_CODES = {
    400: ErrorCode.BAD_FRAME,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.INVALID,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_TYPE,
    429: ErrorCode.RATE_LIMITED,
    503: ErrorCode.UNAVAILABLE,
}


def _allowed_methods(app: FastAPI, request: Request) -> set[str]:
    """The methods the API documents at this path (the router reports only the first partial match). Like the
    router, a literal path segment wins over a parameter: /api/friends/requests is not /api/friends/{user_id}."""
    table: list[tuple[re.Pattern[str], int, set[str]]] | None = getattr(app.state, "allow_table", None)
    if table is None:
        table = []
        for template, ops in app.openapi().get("paths", {}).items():
            pattern = re.compile("^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)) + "$")
            table.append((pattern, template.count("{"), {m.upper() for m in ops}))
        app.state.allow_table = table
    matches = [(params, ops) for pattern, params, ops in table if pattern.match(request.url.path)]
    if not matches:
        return set()
    fewest = min(params for params, _ in matches)
    methods = set().union(*(ops for params, ops in matches if params == fewest))
    if "GET" in methods:
        methods.add("HEAD")
    return methods


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(WsimError)
    async def wsim_error(_: Request, exc: WsimError) -> JSONResponse:
        headers = None
        if "retry_after_s" in exc.details:
            headers = {"Retry-After": str(max(1, int(exc.details["retry_after_s"] + 0.999)))}
        return _error(exc.code, exc.message, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:5]:
            loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
            parts.append(f"{loc}: {err.get('msg')}")
        return _error(ErrorCode.INVALID, "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(
            exc.status_code, ErrorCode.INVALID if exc.status_code < 500 else ErrorCode.INTERNAL
        )
        headers = {k: v for k, v in (getattr(exc, "headers", None) or {}).items() if k.lower() != "allow"}
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(sorted(_allowed_methods(app, request)))
        return _error(code, str(exc.detail), status=exc.status_code, headers=headers or None)

    @app.exception_handler(StoreUnavailable)
    async def unavailable(_: Request, exc: StoreUnavailable) -> JSONResponse:
        return _error(
            ErrorCode.UNAVAILABLE, "a backend is unavailable; try again", headers={"Retry-After": "1"}
        )

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, _: ClientDisconnect) -> JSONResponse:
        # A client that went away mid-request (an aborted upload) is its own fault: one line, rate-limited.
        CLIENT_FAULTS.report("disconnect", f"client left during {request.method} {request.url.path}")
        return _error(ErrorCode.BAD_FRAME, "client disconnected", status=400)

    @app.exception_handler(Exception)
    async def internal(_: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        return _error(ErrorCode.INTERNAL, "internal error")


def create_app(settings: Settings, clock: Clock | None = None, node: Node | None = None) -> FastAPI:
    node = node or build_node(settings, clock)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        install_uvicorn_filter()
        await start_node(node)
        started = []
        try:
            for t in app.state.transports:
                await t.start()
                started.append(t)
            yield
        finally:
            for t in reversed(started):
                try:
                    await t.close()
                except Exception:
                    log.exception("error while closing transport %s", t.name)
            await stop_node(node)

    app = FastAPI(
        responses={
            400: {"model": ErrorOut, "description": "malformed request body"},
            401: {"model": ErrorOut, "description": "missing, invalid or expired token"},
            422: {"model": ErrorOut, "description": "invalid field"},
            429: {"model": ErrorOut, "description": "rate limited"},
            503: {"model": ErrorOut, "description": "a backend is unavailable; retry"},
        },
        title="wsim",
        version=__version__,
        summary="Distributed WebSocket instant messaging: REST API (the socket protocol is in docs/protocol.md)",
        lifespan=lifespan,
        docs_url=None,  # served by mount_api_docs from local assets
        redoc_url=None,
    )
    app.state.node = node
    mount_api_docs(app)
    install_error_handlers(app)
    for r in (
        ops.router,
        auth.router,
        users.router,
        groups.router,
        conversations.router,
        search.router,
        files.router,
        admin.router,
        transports.router,
    ):
        app.include_router(r)
    # Transports (native WebSocket by default; STOMP, HTTP polling, MQTT by configuration) add their own routes.
    port: NodePort = NodeAdapter(node)  # what transports get instead of the node
    app.state.transports = [
        transport_strategies.REGISTRY.create(cfg, port) for cfg in settings.strategies.transports
    ]
    for t in app.state.transports:
        app.router.routes.extend(t.routes())
    if settings.server.web_client:
        mount_web_client(app)
    return app
