"""The part every network bus shares: in-process self-delivery, framing, gap notices (:class:`FramedBus`), and
the start/stop lifecycle around the broker's I/O (:class:`BrokerBus`).

A bus implementation supplies one coroutine, ``send(frames)``, that hands frames to its broker in order and raises
when the broker did not take them, and one task, ``_run``, that stays subscribed. :class:`FramedBus` does the rest
the same way for every broker:

* envelopes addressed to this node are handed to the handler in the caller's task (exactly once, in order,
  without a broker round trip);
* one frame per remote target is built from the payload encoded once (a header is prefixed, the payload bytes
  are shared);
* a ``send`` that fails never raises to the publisher (the message is already stored and acknowledged): the
  streams it was for are owed a gap notice, which a background task sends as soon as the broker takes it, so
  the receiving nodes resync their devices from the store;
* every frame carries a MAC under the cluster key; received frames whose MAC does not verify, or that are
  addressed to another node, are dropped and counted (``wsim_bus_rejected{bus,reason}``) before the
  :class:`~strategies.bus.endpoint.GapDetector` sees them (duplicates dropped, jumps reported).

The cluster key is ``strategies.bus.cluster_key`` (the same secret on every node). Left empty, it is generated once
into ``<data_dir>/bus.key`` (0600) and shared by every node that shares the data directory, as ``wsim cluster``
nodes and the Compose stack's do (the JWT secret is shared the same way); nodes on separate data directories
must be given the key, or they drop each other's frames (and count them as ``mac``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Collection, Sequence
from pathlib import Path
from typing import Any

from core.metrics import Metrics
from strategies._aio import cancel_and_wait
from strategies.bus.base import BusHandler, GapHandler
from strategies.bus.config import _NetworkBusConfig
from strategies.bus.endpoint import (
    BROADCAST,
    BadFrameError,
    BusFrame,
    ForgedFrameError,
    GapDetector,
    Sequencer,
    decode_frame,
    encode_frame,
    frame_key,
    new_publisher_id,
)
from strategies.context import StrategyContext

log = logging.getLogger(__name__)

# Called synchronously in publish order; must fix the frames' place in the broker's order before returning
# (enqueue or start writing), and return an awaitable that fails if the broker did not take them.
SendFrames = Callable[[list[BusFrame]], Awaitable[None]]


KEY_FILE = "bus.key"


def cluster_key(config: _NetworkBusConfig, data_dir: Path) -> bytes:
    """The configured cluster key, or the one kept in ``<data_dir>/bus.key`` (created once, atomically: nodes
    starting together all read the same one)."""
    if config.cluster_key is not None:
        return config.cluster_key.get_secret_value().encode()
    path = data_dir / KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = data_dir / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_hex(32).encode())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # fails if another node got there first: then theirs is the key
        tmp.unlink()
    return path.read_bytes().strip()


class FramedBus:
    def __init__(self, kind: str, metrics: Metrics, config: _NetworkBusConfig, data_dir: Path) -> None:
        self.kind = kind
        self._metrics = metrics
        self._gap_retry_s = config.gap_retry_s
        self._key = frame_key(cluster_key(config, data_dir), config.prefix)
        self.node = ""
        self.publisher = ""
        self._handler: BusHandler | None = None
        self._on_gap: GapHandler | None = None
        self._sequencer: Sequencer | None = None
        self._detector: GapDetector | None = None
        self._send: SendFrames | None = None
        self._gap_task: asyncio.Task[None] | None = None
        self._closing = False

    def bind(self, node: str, handler: BusHandler, on_gap: GapHandler, send: SendFrames) -> None:
        self.node = node
        self.publisher = new_publisher_id(node)
        self._handler = handler
        self._on_gap = on_gap
        self._sequencer = Sequencer(self.publisher)
        self._detector = GapDetector(self.publisher)
        self._send = send
        self._closing = False

    def encode(self, frame: BusFrame) -> bytes:
        """The frame's bytes for the broker, MAC included."""
        return encode_frame(frame, self._key)

    # ---------------------------------------------------------------- publishing
    async def publish(self, payload: bytes, nodes: Collection[str] | None) -> None:
        seq = self._sequencer
        if seq is None or self._handler is None or self._send is None:
            raise RuntimeError(f"{self.kind} bus not started")
        if nodes is None:
            frames = [seq.data(BROADCAST, payload)]
            local = True
        else:
            frames = [seq.data(n, payload) for n in nodes if n != self.node]
            local = self.node in nodes
        # Hand the frames over before anything can yield: the order of calls is the order on the wire.
        sent = self._send(frames) if frames else None
        if local:
            await self._deliver(payload)
        if sent is None:
            return
        try:
            await sent
        except Exception as exc:
            self._metrics.bus_publish_failures.inc(len(frames))
            log.warning("%s bus: %d frame(s) not published (%r); their nodes will be told to resync",
                        self.kind, len(frames), exc)  # fmt: skip
            seq.failed(frames)
            self._ensure_gap_task()

    def _ensure_gap_task(self) -> None:
        if self._gap_task is None or self._gap_task.done():
            self._gap_task = asyncio.create_task(self._send_gap_notices(), name=f"{self.kind}-bus-gaps")

    async def _send_gap_notices(self) -> None:
        """Retry gap notices until the broker takes them (or the bus closes)."""
        seq = self._sequencer
        assert seq is not None and self._send is not None
        while seq.owes and not self._closing:
            await asyncio.sleep(self._gap_retry_s)
            for frame in seq.owed():
                try:
                    await self._send([frame])
                except Exception as exc:
                    log.debug("%s bus: gap notice for %s not sent yet: %r", self.kind, frame.stream, exc)
                    break
                seq.gap_sent(frame)

    # ---------------------------------------------------------------- receiving
    async def on_raw(self, data: bytes) -> None:
        """One frame from the broker, in the order the broker delivered it."""
        detector = self._detector
        if detector is None:
            return
        try:
            frame = decode_frame(data, self._key)
        except BadFrameError as exc:
            reason = "mac" if isinstance(exc, ForgedFrameError) else "format"
            self._metrics.bus_rejected.labels(self.kind, reason).inc()
            log.warning("%s bus: dropped %s", self.kind, exc)
            return
        if frame.stream not in (self.node, BROADCAST):  # genuine, but moved to this node's channel
            self._metrics.bus_rejected.labels(self.kind, "stream").inc()
            log.warning("%s bus: dropped a frame for %s on %s's channel", self.kind, frame.stream, self.node)
            return
        verdict = detector.receive(frame)
        if verdict.duplicate:
            self._metrics.bus_duplicates.inc()
        if verdict.gap is not None:
            await self.gap("sequence" if verdict.deliver else "publisher", verdict.gap)
        if verdict.deliver:
            await self._deliver(frame.payload)

    async def _deliver(self, payload: bytes) -> None:
        assert self._handler is not None
        try:
            await self._handler(payload)
        except Exception:
            log.exception("%s bus: handler failed", self.kind)

    async def gap(self, cause: str, reason: str) -> None:
        self._metrics.bus_gaps.labels(self.kind, cause).inc()
        if self._on_gap is None:
            return
        try:
            await self._on_gap(f"{self.kind} bus: {reason}")
        except Exception:
            log.exception("%s bus: gap handler failed", self.kind)

    async def resubscribed(self, reason: str) -> None:
        """The subscription was re-made after a loss: forget baselines and report one gap."""
        if self._detector is not None:
            self._detector.reset()
        await self.gap("reconnect", reason)

    # ---------------------------------------------------------------- closing
    async def close(self) -> None:
        self._closing = True
        await cancel_and_wait(self._gap_task)
        self._gap_task = None
        self._handler = None
        self._on_gap = None
        self._send = None
        self._sequencer = None
        self._detector = None


class BrokerBus(ABC):
    """The lifecycle every network bus shares around its broker I/O: ``start`` binds the framing, runs ``_run``
    in a task (connect, subscribe, receive, reconnect with :func:`reconnect_delay_s`; it sets ``ready`` once the
    node receives) and waits for it; ``close`` stops it. A bus supplies ``_send``, ``_run`` and ``_unreachable``,
    and extends ``start``/``close`` with what else it runs (a writer task, a connection to close first)."""

    def __init__(self, kind: str, config: _NetworkBusConfig, ctx: StrategyContext) -> None:
        self._framed = FramedBus(kind, ctx.metrics, config, ctx.data_dir)
        self._start_timeout_s = config.start_timeout_s
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    @abstractmethod
    def _unreachable(self) -> str:
        """Why ``start`` failed when the first subscription never came: the broker it could not reach."""

    @abstractmethod
    def _send(self, frames: list[BusFrame]) -> Awaitable[None]:
        """:data:`SendFrames` for this broker."""

    @abstractmethod
    async def _run(self, node: str, ready: asyncio.Future[None]) -> None:
        """Stay subscribed until the bus closes; set ``ready`` the first time frames can arrive."""

    async def start(self, node: str, handler: BusHandler, on_gap: GapHandler) -> None:
        self._closing = False
        self._framed.bind(node, handler, on_gap, self._send)
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(node, ready), name=f"{self._framed.kind}-bus")
        await wait_ready(ready, self._start_timeout_s, self.close, self._unreachable)

    async def publish(self, payload: bytes, nodes: Collection[str] | None = None) -> None:
        await self._framed.publish(payload, nodes)

    async def close(self) -> None:
        self._closing = True
        await self._framed.close()
        await cancel_and_wait(self._task)
        self._task = None


def not_connected(reason: str) -> asyncio.Future[None]:
    """What ``send`` returns while the broker connection is down: an awaitable that fails (a gap notice follows)."""
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    fut.set_exception(ConnectionError(reason))
    return fut


async def all_confirmed(publishes: Sequence[asyncio.Future[Any]], failure: str) -> None:
    """Wait for every publish started by one ``send``; fail (``failure``: the first error) if any was not
    confirmed, so the whole batch is owed a gap notice."""
    results = await asyncio.gather(*publishes, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise ConnectionError(f"{failure}: {r!r}")


def reconnect_delay_s(config: _NetworkBusConfig, attempt: int) -> float:
    """Full-jitter backoff before reconnect number ``attempt`` (0 for the first), so nodes that lost the broker
    together do not come back together."""
    return random.uniform(0, min(config.reconnect_max_s, config.reconnect_min_s * 2**attempt))


async def wait_ready(
    ready: asyncio.Future[None], timeout_s: float, close: Callable[[], Awaitable[None]], unreachable: str
) -> None:
    """Wait for a bus's first subscription; past ``timeout_s`` close it and fail with ``unreachable`` (the broker
    it could not reach), so a node with a wrong bus URL stops at start instead of running without a bus."""
    try:
        await asyncio.wait_for(asyncio.shield(ready), timeout_s)
    except TimeoutError:
        await close()
        raise ConnectionError(f"{unreachable} within {timeout_s:g} s") from None
