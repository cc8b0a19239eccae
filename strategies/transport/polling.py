"""HTTP long polling and short polling: the JSON protocol's frames over plain request/response.

One endpoint, ``POST <path>``, both uploads the device's frames and downloads the server's. A device keeps a
*link* on the server (a :class:`PollLink`, registered with the hub like a socket) that buffers the frames pushed
to it, each numbered. Every request carries the link id and a **cursor**, the number of the last frame the device
has; frames up to the cursor are then dropped, the rest are (re)sent. So a response lost on the way (a request
that times out, a proxy that drops it) loses nothing: the device asks again with the same cursor and gets the same
frames. Frames the device uploads are idempotent in the protocol (``cmid`` for sends, monotonic marks for acks and
reads), so a device resends them when it got no response.

*Delivered* has the same meaning as on a socket: a pushed message is tracked from the moment the device's cursor
shows it has it, until its ``message.ack`` (usually in the same request); the retry policy re-pushes it otherwise.

Long polling holds a request until a frame arrives or ``hold_s`` passes; short polling answers at once, so the
device's polling interval decides latency and cost. A link that sees no request for the heartbeat window
(``heartbeat.interval_s`` x ``missed_beats``) is reaped like a silent socket; the device then gets a new link id,
which tells it to sync from its message cursors, exactly like a WebSocket reconnect.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections import deque
from collections.abc import Sequence
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.routing import BaseRoute

from core.errors import CloseCode, ErrorCode, ErrorOut, WsimError
from core.models import Principal, Track
from core.protocol.codec import ERROR_PREFIX
from core.protocol.frames import DEVICE_PATTERN
from strategies.transport.base import NodePort, Wire
from strategies.transport.config import LongPollTransportConfig, ShortPollTransportConfig

log = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False, description="Access token from /api/auth/login")


MAX_FRAMES_PER_REQUEST = 100  # a schema constraint (so clients can see it): more is refused with 422


def _encode_frame(frame: dict[str, Any]) -> bytes:
    """Back to JSON text for the session's codec (its size limit and error budget apply as on a socket). orjson
    refuses integers beyond 64 bits; the standard library writes them, and the codec then names the bad field."""
    try:
        return orjson.dumps(frame)
    except TypeError:
        return json.dumps(frame).encode()


class PollRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # no "true" for true: a client bug shows

    device: Annotated[str, Field(pattern=DEVICE_PATTERN, description="the device's stable id")]
    link: Annotated[str | None, Field(max_length=64, description="link id from the last response")] = None
    cursor: Annotated[
        int, Field(ge=0, le=2**53 - 1, description="number of the last frame received on this link")
    ] = 0
    frames: Annotated[
        list[dict[str, Any]],
        Field(max_length=MAX_FRAMES_PER_REQUEST, description="protocol frames from the device, in order"),
    ] = Field(default_factory=list)
    wait: Annotated[bool, Field(description="long polling only: hold the request until frames arrive")] = True
    close: Annotated[bool, Field(description="end the link (the device goes offline)")] = False


class ClosedOut(BaseModel):
    code: int
    reason: str


class PollResponse(BaseModel):
    link: str
    cursor: int = Field(description="number of the last frame in 'frames' (send it back as 'cursor')")
    frames: list[dict[str, Any]]
    closed: ClosedOut | None = None


class PollLink(Wire):
    """A device attached by polling: ``buffer`` numbers and keeps the frames pushed to it; requests drain them."""

    def __init__(self, port: NodePort, transport: PollingTransport) -> None:
        self.port = port
        self.transport_ref = transport
        self.link = port.attach(self, transport.name)
        self.id = secrets.token_urlsafe(12)
        # (number, encoded frame, track, stored-at ms)
        self._buffer: deque[tuple[int, str, Track | None, int | None]] = deque()
        self._last_number = 0
        self._confirmed = 0
        self._arrived = asyncio.Event()
        self.closed_info: tuple[int, str] | None = None
        self.created_from: str | None = None  # the link id the request that created this link carried
        self._finishing: asyncio.Future[None] | None = None

    # ---------------------------------------------------------------- Wire
    def buffer(self, frame: str, track: Track | None, ts_ms: int | None) -> bool:
        if len(self._buffer) >= self.port.limits.outbound_queue_frames:
            self.link.close(
                CloseCode.SLOW_CONSUMER, "too many frames waiting for a poll; poll again and sync"
            )
            return True
        self._last_number += 1
        self._buffer.append((self._last_number, frame, track, ts_ms))
        self._arrived.set()
        return True

    def on_close(self, code: CloseCode, reason: str, keep_errors: bool) -> None:
        self.closed_info = (int(code), reason)
        kept = [b for b in self._buffer if keep_errors and b[1].startswith(ERROR_PREFIX)]
        self._buffer.clear()
        self._buffer.extend(kept)
        self._arrived.set()
        self._finishing = asyncio.ensure_future(self._finish())

    async def _finish(self) -> None:
        await self.link.cleanup()
        self.transport_ref.forget(self)

    async def write(self, frame: str, track: Track | None) -> bool:  # pragma: no cover - no writer task
        raise AssertionError("poll links are drained by requests, not by a writer")

    async def close_wire(self, code: CloseCode, reason: str) -> None:  # pragma: no cover - see on_close
        return None

    # ---------------------------------------------------------------- requests
    def confirm(self, cursor: int) -> None:
        """The device has every frame up to ``cursor``: track pushes it now holds, drop them from the buffer."""
        cursor = min(cursor, self._last_number)
        if cursor <= self._confirmed:
            return
        self._confirmed = cursor
        buf = self._buffer
        while buf and buf[0][0] <= cursor:
            _, frame, track, ts_ms = buf.popleft()
            self.link.written(frame, track, ts_ms)

    def pending_after(self, cursor: int, limit: int) -> tuple[int, list[str]]:
        out: list[str] = []
        last = max(cursor, self._confirmed)
        for number, frame, _, _ in self._buffer:
            if number <= cursor:
                continue
            if len(out) >= limit:
                break
            out.append(frame)
            last = number
        return last, out

    def has_after(self, cursor: int) -> bool:
        return bool(self._buffer) and self._buffer[-1][0] > cursor

    async def wait_for_frames(self, cursor: int, hold_s: float) -> None:
        clock = self.port.clock
        deadline = clock.monotonic() + hold_s
        while not self.has_after(cursor) and not self.link.closing():
            remaining = deadline - clock.monotonic()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    def seen(self, principal: Principal) -> None:
        """Any request is a sign of life, and carries a token: its expiry becomes the link's."""
        self.link.touch()
        self.link.renew(principal.exp_ms)


class PollingTransport:
    """Long or short polling (see the module docstring). Meets the interface's guarantees: the cursor makes the
    downlink loss-free across lost responses, and uploads are idempotent. What it weakens is latency and cost,
    which is what the comparison experiment measures."""

    name = "polling"

    def __init__(self, config: LongPollTransportConfig | ShortPollTransportConfig, port: NodePort) -> None:
        self.config = config
        self.port = port
        self.hold_s = config.hold_s if isinstance(config, LongPollTransportConfig) else 0.0
        self._links: dict[tuple[int, str], PollLink] = {}
        self._locks: dict[tuple[int, str], asyncio.Lock] = {}

    def forget(self, link: PollLink) -> None:
        key = (link.link.user, link.link.device)
        if self._links.get(key) is link:
            del self._links[key]
            self._locks.pop(key, None)

    # ---------------------------------------------------------------- the endpoint
    async def poll(
        self,
        body: PollRequest,
        response: Response,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> PollResponse:
        port = self.port
        metrics = port.metrics
        metrics.transport_requests.labels(self.name).inc()
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise WsimError(ErrorCode.UNAUTHORIZED, "missing bearer token")
        principal = await port.verify_access(credentials.credentials)
        key = (principal.user_id, body.device)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one request at a time changes a link (a held poll does not hold this lock)
            link = await self._attach(principal, body)
            if link.closed_info is None:
                link.seen(principal)
                if body.link == link.id:
                    link.confirm(body.cursor)
                for frame in body.frames:
                    if link.link.closing():
                        break
                    await link.link.feed_data(_encode_frame(frame))
                if body.close:
                    link.link.close(CloseCode.NORMAL, "device closed the link")
        cursor = body.cursor if body.link == link.id else 0
        if self.hold_s > 0 and body.wait and not body.frames:
            await link.wait_for_frames(cursor, self.hold_s)
        last, frames = link.pending_after(cursor, self.config.max_frames_per_response)
        if not frames:
            metrics.transport_empty_responses.labels(self.name).inc()
        response.headers["Cache-Control"] = "no-store"
        closed = None
        if link.closed_info is not None and not link.has_after(last):
            closed = ClosedOut(code=link.closed_info[0], reason=link.closed_info[1])
        return PollResponse(
            link=link.id, cursor=last, frames=[orjson.loads(f) for f in frames], closed=closed
        )

    async def _attach(self, principal: Principal, body: PollRequest) -> PollLink:
        key = (principal.user_id, body.device)
        link = self._links.get(key)
        if (
            link is not None
            and body.link is not None
            and link.link.family == principal.family
            and body.link in (link.id, link.created_from)
        ):
            return link  # the current link, or a concurrent request of the device that just got it
        # No link, another one (the device restarted), or another login session: a new link, which replaces the
        # old one in the hub. Its new id tells the device to sync from its message cursors.
        link = PollLink(self.port, self)
        link.created_from = body.link
        self._links[key] = link
        await link.link.open(principal, body.device)
        return link

    # ---------------------------------------------------------------- Transport
    def routes(self) -> Sequence[BaseRoute]:
        router = APIRouter(tags=["transports"])
        router.add_api_route(
            self.config.path,
            self.poll,
            methods=["POST"],
            response_model=PollResponse,
            summary=f"{self.name.replace('_', ' ')}: upload frames, download frames after 'cursor'",
            responses={400: {"model": ErrorOut}, 401: {"model": ErrorOut}, 422: {"model": ErrorOut}},
        )
        return router.routes

    def describe(self) -> dict[str, object]:
        return {
            "kind": self.name,
            "path": self.config.path,
            "method": "POST",
            "hold_s": self.hold_s,
            "frames": "JSON protocol frames, docs/protocol.md",
        }

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for link in list(self._links.values()):
            link.link.close(CloseCode.GOING_AWAY, "server shutting down")


class LongPollTransport(PollingTransport):
    name = "long_poll"


class ShortPollTransport(PollingTransport):
    name = "short_poll"
