"""The campaign's faults. Each one starts its own cluster of real node processes (``core.cluster.LocalCluster``),
puts ledger-keeping devices in a group spread over the nodes, runs traffic, injects its fault while the traffic
runs, heals it, lets every device resync and hands the ledgers and the store to the checker.

A fault is a coroutine ``(Stage) -> None`` that drives the traffic and the injections; :func:`run_fault` does the
rest (setup, settle, resync, store read, verdict, resources, teardown).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from core.cluster import LocalCluster
from core.config import Settings, deep_merge, load_settings
from core.sdk import WsimClient
from experiments.campaign.checker import Verdict, check, resources_back
from experiments.campaign.ledger import Book, Device, member, read_store
from experiments.faults.backends import PrivateBackend, PrivateMariaDB, PrivateRedis
from experiments.faults.proxy import FaultProxy
from experiments.load.spec import ProxyConfig

PASSWORD = "campaign-password"  # noqa: S105 - the campaign users' password
FAST_AUTH = {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1}
RESOURCES = ("wsim_process_resident_bytes", "wsim_process_open_fds", "wsim_asyncio_tasks")
# How far above its baseline a surviving node may end (generous: the run's data and caches legitimately grow).
RESOURCE_SLACK = {"wsim_process_resident_bytes": 64e6, "wsim_process_open_fds": 16, "wsim_asyncio_tasks": 16}
_names = itertools.count()


@dataclass
class Options:
    short: bool
    workdir: Path
    redis_url: str = "redis://127.0.0.1:6379/0"

    @property
    def traffic_s(self) -> float:
        return 6.0 if self.short else 20.0


@dataclass
class Stage:
    """What a fault works with: the cluster, the devices and their book, the group, the injection windows."""

    opts: Options
    cluster: LocalCluster
    book: Book
    conv: str
    owner: WsimClient
    devices: list[Device]
    receivers: list[Device]
    stop: asyncio.Event
    windows: list[tuple[float, float]] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    windows_of: dict[str, tuple[int, int]] = field(default_factory=dict)  # device -> window override
    latency_bound_s: float = 5.0
    check_latency: bool = True
    extra: list[Device] = field(default_factory=list)  # devices that send but are not judged as members
    uncertain_of: dict[str, tuple[int, int]] = field(default_factory=dict)  # device -> seqs it may lack
    untimed: set[str] = field(default_factory=set)  # left out of the live latency (made slow on purpose)

    @property
    def urls(self) -> list[str]:
        return self.cluster.urls

    async def add_device(
        self, node: int, *, of: WsimClient | None = None, judged: bool = True, pinned: bool = False, **kw: Any
    ) -> Device:
        """A new device (a new user in the group, or another device of ``of``) connected to ``node`` first
        (``pinned``: to that node only, it never fails over)."""
        c = client(self.urls[node : node + 1] if pinned else self.urls, 0 if pinned else node, **kw)
        if of is None:
            name = f"cp{next(_names)}{uuid.uuid4().hex[:6]}"
            await c.register(name, PASSWORD)
            await self.owner.befriend(c)
            group = self.conv.split(":", 1)[1]
            await self.owner.request("POST", f"/api/groups/{group}/members", json={"user_ids": [c.user_id]})
        else:
            assert of.user is not None
            if kw.get("device"):
                c.device = kw["device"]
            await c.login(of.user["username"], PASSWORD)
        try:
            await c.connect(timeout=30)
        except BaseException:
            await c.close()  # not handed to the stage: nobody else would close it
            raise
        d = Device(self.book, c)
        d.start_collecting()
        (self.devices if judged else self.extra).append(d)
        # A member added later reads from the seq at which it joined (docs/security.md, history is limited to
        # membership time): the device is judged from there, not from the conversation's first message.
        convs = (await c.request("GET", "/api/conversations"))["conversations"]
        first = next((cv["first_seq"] for cv in convs if cv["conv"] == self.conv), 1)
        if first > 1 and d.name not in self.windows_of:
            self.windows_of[d.name] = (first, 2**62)
        return d

    async def traffic(self, senders: list[Device], pause_s: float = 0.02, text: str = "") -> int:
        """Each sender sends (one at a time, waiting for the ack) until ``stop``."""

        async def run(d: Device) -> int:
            n = 0
            while not self.stop.is_set() and not d.client.closed_for_good:
                await d.send(self.conv, text or f"{d.name}#{n}", timeout=30)
                n += 1
                await asyncio.sleep(pause_s)
            return n

        return sum(await asyncio.gather(*(run(d) for d in senders)))

    async def timed_traffic(self, senders: list[Device], seconds: float, **kw: Any) -> int:
        task = asyncio.create_task(self.traffic(senders, **kw))
        await asyncio.sleep(seconds)
        self.stop.set()
        return await task


async def restart_with_env(cluster: LocalCluster, index: int, env: dict[str, str]) -> None:
    """Restart one node with extra environment (settings of that node only: ``WSIM_*`` overrides the file)."""
    await cluster.kill(index)
    cluster.extra_env = env
    try:
        await cluster.restart(index)
    finally:
        cluster.extra_env = {}


def client(urls: list[str], first: int, **kwargs: Any) -> WsimClient:
    ordered = urls[first:] + urls[:first]
    return WsimClient(ordered, backoff_base_s=0.1, backoff_cap_s=1.0, **kwargs)


def campaign_settings(data_dir: Path, prefix: str, redis_url: str, overrides: dict[str, Any]) -> Settings:
    base: dict[str, Any] = {
        "server": {"data_dir": str(data_dir), "port": 0, "gc_tuning": False, "log_level": "warning"},
        "auth": FAST_AUTH,
        "limits": {"rate_per_s": 1000, "rate_burst": 2000},
        # the whole history on a new device's first sync: devices added mid-run must hold everything too
        "sync": {"recent_messages": 100_000, "sweep_interval_s": 1.0, "sweep_grace_s": 1.0},
        "strategies": {
            "bus": {"kind": "redis", "url": redis_url, "prefix": prefix, "reconnect_max_s": 0.5},
            "presence": {
                "kind": "redis",
                "url": redis_url,
                "prefix": prefix,
                "node_lease_s": 2.0,
                "renew_s": 0.5,
            },
            "cache": {"kind": "off"},
        },
    }
    return load_settings(None, deep_merge(base, overrides))


async def scrape(urls: list[str]) -> list[dict[str, float]]:
    out = []
    async with httpx.AsyncClient(timeout=5) as http:
        for url in urls:
            values: dict[str, float] = {}
            try:
                text = (await http.get(f"{url}/metrics")).text
            except httpx.HTTPError:
                out.append(values)
                continue
            for line in text.splitlines():
                series, _, value = line.partition(" ")
                name = series.split("{", 1)[0]  # summed over labels
                if name in (*RESOURCES, "wsim_bus_gaps_total", "wsim_sweep_resyncs_total"):
                    values[name] = values.get(name, 0.0) + float(value)
            out.append(values)
    return out


@dataclass
class FaultResult:
    name: str
    verdict: Verdict
    notes: dict[str, Any]
    resources: dict[str, Any]
    latency_bound_s: float | None
    duration_s: float
    error: str | None = None

    @property
    def passed(self) -> bool:
        latency_ok = self.latency_bound_s is None or self.verdict.max_latency_s <= self.latency_bound_s
        resources_ok = all(ok for node in self.resources.get("nodes", []) for _, _, ok in node.values())
        return (
            self.error is None
            and self.verdict.passed
            and latency_ok
            and resources_ok
            and self.notes.get("fault_ok", True)
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "verdict": self.verdict.as_dict(),
            "notes": self.notes,
            "resources": self.resources,
            "latency_bound_s": self.latency_bound_s,
            "duration_s": round(self.duration_s, 2),
            "error": self.error,
        }


Fault = Callable[[Stage], Awaitable[None]]


@contextlib.asynccontextmanager
async def cluster_for(
    opts: Options, name: str, nodes: int, overrides: dict[str, Any], env: dict[str, str]
) -> AsyncIterator[LocalCluster]:
    data = opts.workdir / name
    prefix = f"wsimcp{uuid.uuid4().hex[:8]}"
    settings = campaign_settings(data / "data", prefix, opts.redis_url, overrides)
    cluster = LocalCluster(settings, nodes, extra_env=env)
    async with cluster:
        yield cluster


async def run_fault(
    opts: Options,
    name: str,
    fault: Fault,
    *,
    nodes: int = 2,
    members_per_node: int = 2,
    overrides: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    prepare: Callable[[Options], contextlib.AbstractAsyncContextManager[dict[str, Any]]] | None = None,
) -> FaultResult:
    start = time.monotonic()
    book = Book()
    async with contextlib.AsyncExitStack() as stack:
        extra_overrides: dict[str, Any] = {}
        if prepare is not None:
            extra_overrides = await stack.enter_async_context(prepare(opts))
        cluster = await stack.enter_async_context(
            cluster_for(opts, name, nodes, deep_merge(overrides or {}, extra_overrides), env or {})
        )
        owner = client(cluster.urls, 0)
        stack.push_async_callback(owner.close)
        await owner.register(f"owner{next(_names)}{uuid.uuid4().hex[:6]}", PASSWORD)
        group = await owner.create_group(name, [])
        stage = Stage(opts, cluster, book, f"g:{group['id']}", owner, [], [], asyncio.Event())
        stage.notes.update(_PENDING)  # private backends made by ``prepare``, for the fault to drive
        _PENDING.clear()
        stack.push_async_callback(_close_all, stage)
        for node in range(nodes):
            for _ in range(members_per_node):
                await stage.add_device(node)
        baseline = await scrape(cluster.urls)
        error = None
        try:
            await fault(stage)
        except (
            Exception
        ) as exc:  # a fault that could not run is a failed fault, with its reason in the report
            error = f"{type(exc).__name__}: {exc}"
        stage.stop.set()
        await _settle(stage)
        await _final_resync(stage)
        stored = await read_store(owner, [stage.conv])
        members = [
            member(
                d, {stage.conv: stage.windows_of.get(d.name, (1, 2**62))}, timed=d.name not in stage.untimed
            )
            for d in stage.devices
        ]
        verdict = check(book.final_sends(), book.shown, stored, members, stage.windows)
        stage.notes.setdefault("ids_unique", len({s.msg_id for s in stored}) == len(stored))
        if verdict.lost or verdict.undelivered:  # what the devices went through, to explain it
            stage.notes["device_stats"] = {
                d.name: {
                    "node": d.client.node, "closes": d.client.stats.closes, "reconnects": d.client.stats.reconnects,
                    "closed_for_good": d.client.closed_for_good, "connected": d.client.connected.is_set(),
                }
                for d in stage.devices
            }  # fmt: skip
        stage.notes["devices"] = len(stage.devices)
        for d in [*stage.devices, *stage.extra]:
            with contextlib.suppress(Exception):
                await d.close()
        await asyncio.sleep(1.0)  # the nodes notice the closed sockets
        after = await scrape(cluster.urls)
        resources = {
            "nodes": [
                {k: list(v) for k, v in resources_back(b, a, RESOURCE_SLACK).items()}
                for b, a, m in zip(baseline, after, cluster.members, strict=True)
                if m.starts == 1
                and a
                and b  # nodes that ran through the fault (restarted ones have no baseline)
            ],
            "bus_gaps": sum(a.get("wsim_bus_gaps_total", 0.0) for a in after),
            "sweep_resyncs": sum(a.get("wsim_sweep_resyncs_total", 0.0) for a in after),
        }
        return FaultResult(
            name, verdict, stage.notes, resources, stage.latency_bound_s if stage.check_latency else None,
            time.monotonic() - start, error,
        )  # fmt: skip
    raise AssertionError("unreachable")  # pragma: no cover - the stack above returns


async def _close_all(stage: Stage) -> None:
    for d in [*stage.devices, *stage.extra]:
        with contextlib.suppress(Exception):
            await d.close()


async def _settle(stage: Stage, timeout_s: float = 30.0) -> None:
    """Wait until every send has its fate (or the timeout: what is left stays unknown)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(s.state is not None for s in stage.book.sends.values()):
            return
        await asyncio.sleep(0.1)


async def _final_resync(stage: Stage, timeout_s: float = 45.0) -> None:
    """Every device reconnected and synced after the faults healed; then 2 s without a new release."""
    deadline = time.monotonic() + timeout_s

    def ready() -> bool:
        return all(d.client.connected.is_set() and d.client.synced.is_set() for d in stage.devices)

    while time.monotonic() < deadline and not ready():  # noqa: ASYNC110 - polls many clients
        await asyncio.sleep(0.1)
    stage.book.resyncing = True
    for d in stage.devices:
        await d.resync()
    last, quiet = -1, 0
    while time.monotonic() < deadline and (quiet < 20 or not ready()):
        n = len(stage.book.shown)
        quiet = quiet + 1 if n == last else 0
        last = n
        await asyncio.sleep(0.1)
    stale = [d.name for d in stage.devices if not (d.client.connected.is_set() and d.client.synced.is_set())]
    if stale:
        stage.notes["not_resynced"] = stale


# ==================================================================== the faults
async def client_drop(stage: Stage) -> None:
    """(1) Connections dropped mid-send: a proxy resets and truncates (partial frames) the senders' sockets at
    random, and every few seconds all senders' sockets are aborted at once (acks lost on the way back)."""
    node_url = stage.urls[0]
    proxy = FaultProxy(
        ProxyConfig(reset_rate_per_s=0.5, truncate_rate_per_s=0.5, seed=7),
        ("127.0.0.1", int(node_url.rsplit(":", 1)[1])),
    )
    port = await proxy.start()
    senders: list[Device] = []
    try:
        for _ in range(3):
            d = await stage.add_device(0)
            d.client.urls = [f"http://127.0.0.1:{port}"]  # the socket goes through the proxy, REST does not
            await d.client.drop()
            senders.append(d)
        task = asyncio.create_task(stage.traffic(senders, pause_s=0.01))
        for _ in range(3 if stage.opts.short else 8):
            await asyncio.sleep(stage.opts.traffic_s / 4)
            t = time.time()
            for d in senders:
                await d.client.drop()
            stage.windows.append((t, t))
        await asyncio.sleep(1.0)
        stage.stop.set()
        await task
        stage.notes["proxy"] = {"resets": proxy.stats.resets, "truncations": proxy.stats.truncations}
        stage.notes["resends"] = sum(d.client.stats.resends for d in senders)
        stage.notes["fault_ok"] = proxy.stats.resets + proxy.stats.truncations > 0
    finally:
        for d in senders:
            d.client.urls = [node_url]  # healed: the next reconnect goes straight to the node
        await proxy.close()
    stage.latency_bound_s = (
        10.0  # senders' messages wait for the reconnect; receivers are not behind the proxy
    )


CRASH_POINTS = ("before_store", "after_store", "after_fanout", "after_ack", "mid_fanout")


async def crash(stage: Stage) -> None:
    """(2) ``kill -9`` of node-1 at each point of the send path (core/faultpoints.py). The sender on node-1
    vanishes with it (its app is gone), so only the sweeper can bring a stored-but-not-fanned-out message to
    the online devices of node-2; when the sender comes back it resends what it had no ack for, same cmid."""
    cluster = stage.cluster
    marker = stage.opts.workdir / "crash" / "markers.txt"
    hit: dict[str, str] = {}
    steady = await stage.add_device(1)
    # The steady sender's group messages are fanned out on node-1 too, so they count towards a crash point such
    # as mid_fanout: it pauses while node-1's devices are being set up, or node-1 could die in the middle of a
    # registration (seen: the fault aborted with a ReadError or a connect timeout instead of running).
    steady_go = asyncio.Event()
    steady_go.set()

    async def steady_traffic() -> None:
        n = 0
        while not stage.stop.is_set():
            await steady_go.wait()
            await steady.send(stage.conv, f"{steady.name}#{n}", timeout=30)
            n += 1
            await asyncio.sleep(0.05)

    steady_task = asyncio.create_task(steady_traffic())
    for point in CRASH_POINTS:
        env = {"WSIM_FAULT_CRASH_AT": f"{point}:5", "WSIM_FAULT_MARKER": str(marker)}
        steady_go.clear()
        await restart_with_env(cluster, 0, env)
        locals_ = [await stage.add_device(0) for _ in range(2)]  # recipients on the node that will die
        sender = await stage.add_device(0, judged=False, pinned=True)
        steady_go.set()
        t0 = time.time()
        stop = asyncio.Event()

        async def run(d: Device = sender, stop: asyncio.Event = stop) -> None:
            n = 0
            while not stop.is_set() and cluster.members[0].running:
                await d.send(stage.conv, f"{d.name}#{n}", timeout=3)
                n += 1
                await asyncio.sleep(0.05)

        task = asyncio.create_task(run())
        proc = cluster.members[0].proc
        assert proc is not None
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            hit[point] = "not reached"
        stop.set()
        stage.windows.append((t0, time.time()))
        await asyncio.sleep(0.3)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        unacked = [s for s in stage.book.sends.values() if s.device == sender.name and s.state is None]
        await sender.close()  # the app dies with its node
        lines = marker.read_text().splitlines() if marker.exists() else []
        hit.setdefault(point, next((ln for ln in reversed(lines) if ln.startswith(point)), "not reached"))
        # the app comes back (another node) and resends what it had no ack for, with the same cmid
        back = await stage.add_device(1, of=sender.client, judged=False, device=sender.name)
        for s in unacked:
            await back.send(stage.conv, s.text, cmid=s.cmid, timeout=30)  # same cmid, same body
        del locals_
    await restart_with_env(cluster, 0, {})
    stage.stop.set()
    steady_go.set()
    await steady_task
    stage.notes["points_hit"] = hit
    stage.notes["fault_ok"] = all(v != "not reached" for v in hit.values())
    stage.latency_bound_s = 5.0  # sweeper interval + grace + a sync round trip, with room for a busy machine


async def bus_restart(stage: Stage) -> None:
    """(3) The bus broker (a private Redis) killed and restarted, empty, during traffic: every node notices the
    gap and its devices resync."""
    broker: PrivateRedis = stage.notes.pop("_broker")
    await _bus_outages(stage, broker.stop, broker.start, down_s=1.0)


async def _bus_outages(
    stage: Stage, cut: Callable[[], Awaitable[Any]], heal: Callable[[], Awaitable[Any]], down_s: float
) -> None:
    """Traffic from every device with the bus cut ``down_s`` at a time (once, or three times in the full form);
    the evidence is the bus gaps the nodes counted."""
    task = asyncio.create_task(stage.traffic(stage.devices))
    for _ in range(1 if stage.opts.short else 3):
        await asyncio.sleep(stage.opts.traffic_s / 2)
        t = time.time()
        await cut()
        await asyncio.sleep(down_s)
        await heal()
        stage.windows.append((t, time.time()))
    await asyncio.sleep(stage.opts.traffic_s / 2)
    stage.stop.set()
    await task
    gaps = sum(m.get("wsim_bus_gaps_total", 0.0) for m in await scrape(stage.urls))
    stage.notes["bus_gaps"] = gaps
    stage.notes["fault_ok"] = gaps > 0
    stage.latency_bound_s = 10.0


@contextlib.asynccontextmanager
async def _pending_backend(backend: PrivateBackend, key: str) -> AsyncIterator[str]:
    """Run ``backend`` for one stage and hand it to the stage's fault as ``key``; yields its URL."""
    await backend.start()
    try:
        _PENDING[key] = backend
        yield backend.url
    finally:
        await backend.stop()


@contextlib.asynccontextmanager
async def private_redis_bus(opts: Options) -> AsyncIterator[dict[str, Any]]:
    async with _pending_backend(PrivateRedis(opts.workdir / "bus-redis"), "_broker") as url:
        yield {"strategies": {"bus": {"kind": "redis", "url": url}}}


@contextlib.asynccontextmanager
async def private_mariadb(opts: Options) -> AsyncIterator[dict[str, Any]]:
    async with _pending_backend(PrivateMariaDB(opts.workdir / "mariadb"), "_db") as dsn:
        yield {"strategies": {"store": {"messages": {"kind": "mysql", "dsn": dsn, "connect_timeout_s": 1}}}}


_PENDING: dict[str, Any] = {}  # private backends a prepare() made, handed to their fault through its notes


async def database_down(stage: Stage) -> None:
    """(4) The message database (a private MariaDB) killed and restarted during traffic: while it is down no
    send may be acknowledged (the SDK gets ``unavailable`` and resends), and nothing acknowledged is lost."""
    db: PrivateMariaDB = stage.notes.pop("_db")
    task = asyncio.create_task(stage.traffic(stage.devices))
    acks_down = 0
    for _ in range(1 if stage.opts.short else 2):
        await asyncio.sleep(stage.opts.traffic_s / 2)
        t = time.time()
        await db.stop()
        await asyncio.sleep(3.0)
        t_up = time.time()
        acks_down += sum(1 for a in stage.book.acks_at if t + 0.5 < a < t_up)
        await db.start()
        stage.windows.append((t, t_up))
    await asyncio.sleep(stage.opts.traffic_s / 2)
    stage.stop.set()
    await task
    errors = [e for d in stage.devices for e in d.client.errors if e.get("code") == "unavailable"]
    stage.notes["acks_while_down"] = acks_down
    stage.notes["unavailable_errors"] = len(errors)
    stage.notes["fault_ok"] = acks_down == 0 and len(errors) > 0
    stage.latency_bound_s = 15.0  # messages sent during the outage are stored (and delivered) after it


async def partition(stage: Stage) -> None:
    """(5) node-2 cut off from the bus (a fault proxy between it and Redis refuses and aborts connections)
    while the rest of the cluster keeps going; the partition heals and node-2's devices resync."""
    proxy: FaultProxy = stage.notes.pop("_proxy")
    port: int = stage.notes.pop("_proxy_port")
    await restart_with_env(stage.cluster, 1, {"WSIM_STRATEGIES__BUS__URL": f"redis://127.0.0.1:{port}/0"})
    for _ in range(2):
        await stage.add_device(1)  # devices on the node that will be cut off
    await _bus_outages(
        stage, proxy.close, lambda: proxy.start(port=port), down_s=3.0
    )  # close: refuse and abort


async def slow_consumer(stage: Stage) -> None:
    """(6) One device stops reading; its bounded queue overflows and the server closes it with 4008; it
    resumes, reconnects and loses nothing; the other devices' latency stays within 2x of before."""
    slow, senders = stage.devices[-1], stage.devices[:2]
    stage.untimed.add(slow.name)
    text = "x" * 4900  # big frames fill the socket buffers quickly
    # baseline latency: the same traffic, nobody slow
    n0 = len(stage.book.shown)
    await stage.timed_traffic(senders, stage.opts.traffic_s / 2, text=text, pause_s=0)
    before = _median_latency(stage, n0, exclude=slow.name)
    stage.stop.clear()
    # The slow device: the same device on a raw socket that authenticates and then reads nothing (the SDK
    # would keep reading); its SDK client is offline meanwhile and keeps its cursors.
    await slow.client.disconnect()
    assert slow.client.access_token is not None
    url = stage.urls[0].replace("http://", "ws://") + "/ws"
    raw = await ws_connect(url, max_queue=1, compression=None, ping_interval=None)
    await raw.send(
        orjson.dumps({"type": "auth", "token": slow.client.access_token, "device": slow.name}).decode()
    )
    t = time.time()
    n1 = len(stage.book.shown)
    await stage.timed_traffic(senders, stage.opts.traffic_s, text=text, pause_s=0)
    during = _median_latency(stage, n1, exclude=slow.name)
    code = None
    try:
        while True:
            await asyncio.wait_for(raw.recv(), 30)
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd is not None else None
    except TimeoutError:
        pass
    finally:
        await raw.close()
        await raw.wait_closed()
    stage.windows.append((t, time.time()))
    stage.notes["slow_close_code"] = code
    await slow.client.connect(timeout=30)  # back: syncs from its cursors
    stage.notes["median_latency_before_s"] = round(before, 4)
    stage.notes["median_latency_during_s"] = round(during, 4)
    ratio = during / before if before > 0 else 0.0
    stage.notes["latency_ratio"] = round(ratio, 2)
    # within 2x, or within 20 ms when the baseline is a few milliseconds (timer noise on a shared machine)
    stage.notes["fault_ok"] = code == 4008 and (ratio <= 2.0 or during - before < 0.02)
    stage.latency_bound_s = 5.0
    stage.windows.clear()  # recovery is not the point here (the slow device's own close is)


def _median_latency(stage: Stage, since: int, exclude: str) -> float:
    stored_ts = {s.msg_id: s.t_send_s for s in stage.book.sends.values() if s.msg_id}
    lat = sorted(
        m.t_s - stored_ts[m.msg_id]
        for m in stage.book.shown[since:]
        if m.device != exclude and m.msg_id in stored_ts
    )
    return lat[len(lat) // 2] if lat else 0.0


async def clock_skew(stage: Stage) -> None:
    """(7) node-2's wall clock runs 3 s behind and then steps back 2 s more during traffic: ids stay unique and
    the order comes from seq, not from time."""
    env = {"WSIM_FAULT_CLOCK_SKEW_MS": "-3000", "WSIM_FAULT_CLOCK_BACK_MS": "2000"}
    env["WSIM_FAULT_CLOCK_BACK_AFTER_S"] = str(stage.opts.traffic_s / 2)
    await restart_with_env(stage.cluster, 1, env)
    for _ in range(2):
        await stage.add_device(1)  # devices (and senders) on the skewed node
    await stage.timed_traffic(stage.devices, stage.opts.traffic_s)
    stage.check_latency = False  # store times come from two clocks that disagree on purpose
    stage.notes["fault_ok"] = True


async def resend_race(stage: Stage) -> None:
    """(8) The same device connected to two nodes sends each message through both at once (same cmid, same
    body): one message is stored and both copies get its ack; a resend with another body is a conflict."""
    twin_a = await stage.add_device(0, judged=False)
    twin_b_client = client(stage.urls, 1)
    assert twin_a.client.user is not None
    twin_b_client.device = twin_a.name
    await twin_b_client.login(twin_a.client.user["username"], PASSWORD)
    await twin_b_client.connect()
    stage.extra.append(
        Device(Book(), twin_b_client)
    )  # its own book: the pair shares one ledger entry per cmid
    agree = conflicts = 0
    n = 20 if stage.opts.short else 100
    for i in range(n):
        cmid = uuid.uuid4().hex
        _a, b = await asyncio.gather(
            twin_a.send(stage.conv, f"race#{i}", cmid=cmid),
            twin_b_client.send(stage.conv, f"race#{i}", cmid=cmid, timeout=30),
            return_exceptions=True,
        )
        if (
            not isinstance(b, BaseException)
            and b is not None
            and b["id"] == twin_a.book.sends[(twin_a.name, cmid)].msg_id
        ):
            agree += 1
        if i % 5 == 0:
            try:
                await twin_b_client.send(stage.conv, f"changed#{i}", cmid=cmid, timeout=30)
            except Exception as exc:
                conflicts += getattr(exc, "code", "") == "conflict"
    stage.notes["races"] = n
    stage.notes["both_acks_agree"] = agree
    stage.notes["conflicts_detected"] = conflicts
    stage.notes["fault_ok"] = agree == n and conflicts == (n + 4) // 5


async def graceful_restart(stage: Stage) -> None:
    """(9) Every node in turn stopped with SIGTERM (sockets closed with 1001) and started again, during
    traffic."""
    task = asyncio.create_task(stage.traffic(stage.devices))
    await asyncio.sleep(stage.opts.traffic_s / 3)
    for i, m in enumerate(stage.cluster.members):
        t = time.time()
        assert m.proc is not None
        m.proc.send_signal(signal.SIGTERM)
        await m.proc.wait()
        await stage.cluster.restart(i)
        stage.windows.append((t, time.time()))
        await asyncio.sleep(stage.opts.traffic_s / 3)
    stage.stop.set()
    await task
    stage.notes["restarts"] = len(stage.cluster.members)
    stage.notes["fault_ok"] = True
    stage.latency_bound_s = 10.0


async def reconnect_storm(stage: Stage) -> None:
    """(10) Every device's connection dropped at the same moment, repeatedly, during traffic."""
    for _ in range(16 if not stage.opts.short else 6):
        await stage.add_device(len(stage.urls) - 1)
    task = asyncio.create_task(stage.traffic(stage.devices[:4]))
    worst = 0.0
    for _ in range(2 if stage.opts.short else 5):
        await asyncio.sleep(stage.opts.traffic_s / 3)
        t = time.time()
        for d in stage.devices:
            await d.client.drop()
        await asyncio.sleep(0.2)
        while not all(d.client.synced.is_set() for d in stage.devices) and time.time() - t < 30:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        worst = max(worst, time.time() - t)
        stage.windows.append((t, time.time()))
    stage.stop.set()
    await task
    stage.notes["storm_devices"] = len(stage.devices)
    stage.notes["max_all_resynced_s"] = round(worst, 2)
    stage.notes["fault_ok"] = worst < 30
    stage.latency_bound_s = 10.0


async def interrupted_upload(stage: Stage) -> None:
    """(11) Uploads cut off mid-body (the client's TCP connection aborted) leave no file and no temporary part
    behind; a complete upload afterwards works. Traffic runs meanwhile."""
    task = asyncio.create_task(stage.traffic(stage.devices))
    files_root = stage.cluster.data_dir / "files"
    before = _files(files_root)
    assert stage.owner.access_token is not None
    host, port = stage.urls[0].removeprefix("http://").split(":")
    cuts = 3 if stage.opts.short else 10
    for i in range(cuts):
        await _cut_upload(host, int(port), stage.owner.access_token, 2_000_000, 200_000 * (i + 1))
    await asyncio.sleep(1.0)
    left = _files(files_root) - before
    ok = await stage.owner.upload(b"%PDF-1.4\n" + b"0" * 5000, "whole.pdf")
    stage.stop.set()
    await task
    stage.notes["interrupted"] = cuts
    stage.notes["left_behind"] = sorted(str(p) for p in left)
    stage.notes["complete_upload_ok"] = bool(ok.get("id"))
    stage.notes["fault_ok"] = not left and bool(ok.get("id"))


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


async def _cut_upload(host: str, port: int, token: str, declared: int, sent: int) -> None:
    boundary = "campaignboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="cut.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    request = (
        f"POST /api/files HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {declared}\r\n\r\n"
    ).encode()
    _, writer = await asyncio.open_connection(host, port)
    writer.write(request + head + os.urandom(sent))
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.transport.abort()


async def member_removed(stage: Stage) -> None:
    """(12) A member removed from the group while everybody (the member too) is sending: the member's sends
    after the removal are refused (not stored), it receives nothing after the removal notice, everyone else
    gets everything."""
    victim = stage.devices[1]
    task = asyncio.create_task(stage.traffic(stage.devices))
    await asyncio.sleep(stage.opts.traffic_s / 2)
    group = stage.conv.split(":", 1)[1]
    head = (await stage.owner.history(stage.conv, limit=1))["messages"][-1]["seq"]
    await stage.owner.request("DELETE", f"/api/groups/{group}/members/{victim.user}")
    await asyncio.sleep(stage.opts.traffic_s / 2)
    stage.stop.set()
    await task
    after = 0
    removal_seq = None
    while True:
        page = await stage.owner.history(stage.conv, after=after, limit=200)
        for m in page["messages"]:
            if m["kind"] == "system" and m["body"].get("event") == "group.member_removed":
                removal_seq = m["seq"]
            after = m["seq"]
        if not page["has_newer"]:
            break
    assert removal_seq is not None, "no removal notice in the history"
    # Everything up to the head read just before the removal is the member's; what was stored between that read
    # and the removal notice raced with the removal (it may or may not have reached the member); after the
    # notice, nothing may reach it.
    stage.windows_of[victim.name] = (stage.windows_of.get(victim.name, (1, 0))[0], removal_seq)
    stage.uncertain_of[victim.name] = (head + 1, removal_seq - 1)
    refused = [s for s in stage.book.sends.values() if s.device == victim.name and s.state == "failed"]
    stage.notes["removal_seq"] = removal_seq
    stage.notes["victim_sends_refused"] = len(refused)
    stage.notes["refusal_codes"] = sorted({s.error or "" for s in refused})
    stage.notes["fault_ok"] = len(refused) > 0


@dataclass(frozen=True)
class FaultSpec:
    fault: Fault
    nodes: int = 2
    members: int = 2  # per node
    overrides: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    prepare: Callable[[Options], contextlib.AbstractAsyncContextManager[dict[str, Any]]] | None = None


@contextlib.asynccontextmanager
async def bus_proxy(opts: Options) -> AsyncIterator[dict[str, Any]]:
    """A fault proxy in front of the shared Redis, for the partitioned node's bus."""
    host, port = opts.redis_url.removeprefix("redis://").split("/")[0].split(":")
    proxy = FaultProxy(ProxyConfig(), (host, int(port)))
    listen = await proxy.start()
    _PENDING["_proxy"], _PENDING["_proxy_port"] = proxy, listen
    try:
        yield {}
    finally:
        await proxy.close()


FAULTS: dict[str, FaultSpec] = {
    "client_drop": FaultSpec(client_drop, nodes=1),
    "crash_points": FaultSpec(crash),
    "bus_restart": FaultSpec(bus_restart, nodes=3, prepare=private_redis_bus),
    "database_down": FaultSpec(database_down, prepare=private_mariadb),
    "partition": FaultSpec(partition, prepare=bus_proxy),
    "slow_consumer": FaultSpec(
        slow_consumer, nodes=1, members=4, overrides={"limits": {"outbound_queue_frames": 50}}
    ),
    "clock_skew": FaultSpec(clock_skew),
    "resend_race": FaultSpec(resend_race),
    "graceful_restart": FaultSpec(graceful_restart, nodes=3),
    "reconnect_storm": FaultSpec(reconnect_storm),
    "interrupted_upload": FaultSpec(interrupted_upload, nodes=1),
    "member_removed": FaultSpec(member_removed),
}
