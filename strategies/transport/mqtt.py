"""MQTT devices, bridged by the node (aiomqtt, QoS 1 both ways).

Devices connect to the broker, not to wsim. The node's bridge subscribes to ``<prefix>/up/+`` and turns each
attributable uplink into a protocol frame of an :class:`MqttLink` (a device link registered with the hub, with
the same session as a socket); frames for the device are published, signed, to its downlink topic. How a device
proves who it is, and why no one can post as someone else nor forge a downlink, is in
:mod:`core.protocol.mqtt_auth` and docs/protocol.md; who may read and write which topic on the broker (``provision:
dynsec``: one broker account per device login, created and deleted by the bridge) in docs/security.md, section 11.

Semantics, against the transport interface:
* uplink: QoS 1 to the broker, and the bridge's session is persistent (``clean_session`` false), so uplinks
  published while the bridge is away wait in the broker; ``message.sent`` still means stored;
* downlink: QoS 1, tracked until the device's ``message.ack`` like any push; a link lives while the device
  publishes (a ``ping`` at least every ``heartbeat.interval_s``) and is reaped after the heartbeat window. A
  device that comes back gets a new ``auth.ok`` and syncs, like after a reconnect;
* one bridge per cluster: enable this transport on one node (it does not use shared subscriptions, so two
  bridges would both take every uplink; sends would still be de-duplicated by ``cmid``, other frames not).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import re
import socket
from collections.abc import Sequence
from contextlib import suppress
from typing import Annotated, Any

import aiomqtt
import orjson
from fastapi import APIRouter, Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.routing import BaseRoute

from core.errors import CloseCode, ErrorCode, ErrorOut, WsimError
from core.models import Principal, Track
from core.protocol.codec import encode_obj
from core.protocol.frames import DEVICE_PATTERN, ErrorFrame
from core.protocol.mqtt_auth import (
    Credential,
    UplinkRefusedError,
    UplinkVerifier,
    device_key,
    downlink_tag,
    issue_credential,
    signed_payload,
)
from strategies._aio import cancel_and_wait
from strategies.transport.base import NodePort, Wire
from strategies.transport.config import MqttTransportConfig

log = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False, description="Access token from /api/auth/login")
_CLIENT_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
_CONTROL_RESPONSES = f"{_CONTROL_TOPIC}/response"


def _is_hello(frame: bytes) -> bool:
    """``{"type": "auth"}``: a device (re)attaching, e.g. after it reconnected to the broker."""
    if b"auth" not in frame[:64]:
        return False
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return False
    return isinstance(obj, dict) and obj.get("type") == "auth"


class CredentialsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # no "true" for true: a client bug shows
    device: Annotated[str, Field(pattern=DEVICE_PATTERN, description="the device's stable id")]


class BrokerOut(BaseModel):
    host: str
    port: int


class CredentialsOut(BaseModel):
    broker: BrokerOut
    uplink: str = Field(description="publish your frames here (QoS 1)")
    downlink: str = Field(description="subscribe here (QoS 1) before your first uplink")
    key: str = Field(
        description="HMAC-SHA256 key (as ASCII text): sign uplinks with it and verify downlinks; keep it secret"
    )
    expires: int = Field(description="ms since the epoch; fetch new credentials with a fresh token before it")
    down_floor: int = Field(
        description="drop any downlink whose n is not above this (and above the last n you accepted)"
    )
    username: str | None = Field(
        default=None, description="broker account of this device (when the broker enforces accounts)"
    )
    password: str | None = Field(default=None, description="its broker password")
    payload: str = Field(description="uplink payload format")


class MqttLink(Wire):
    """One device attached through the broker: its downlink topic and key around the node's device session."""

    def __init__(self, port: NodePort, bridge: MqttBridgeTransport, downlink: str, key: str) -> None:
        self.link = port.attach(self, "mqtt")
        self.bridge = bridge
        self.downlink = downlink
        self.key = key
        # Replaced by a new link on the same downlink topic (a re-hello): its ``closed`` notice would land on
        # the topic the device still reads, just before the new auth.ok, so it is not sent (H5).
        self.quiet = False
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue(maxsize=port.limits.outbound_queue_frames)
        self._reader: asyncio.Task[None] | None = None
        self._finishing: asyncio.Future[None] | None = None

    @property
    def family(self) -> str:
        return self.link.family

    def closing(self) -> bool:
        return self.link.closing()

    def close(self, code: CloseCode, reason: str) -> None:
        self.link.close(code, reason)

    async def write(self, frame: str, track: Track | None) -> bool:
        try:
            await self.bridge.publish_signed(self.downlink, self.key, frame.encode())
        except aiomqtt.MqttError as exc:
            raise ConnectionError(f"downlink publish failed: {exc}") from exc
        return True

    async def close_wire(self, code: CloseCode, reason: str) -> None:
        if self.quiet:
            return
        notice = encode_obj({"type": "closed", "code": int(code), "reason": reason})
        await self.bridge.publish_signed(self.downlink, self.key, notice.encode())
        if code == CloseCode.SESSION_REVOKED:
            await self.bridge.deprovision(self.downlink)

    def on_close(self, code: CloseCode, reason: str, keep_errors: bool) -> None:
        self._finishing = asyncio.ensure_future(self._finish())

    async def _finish(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.link.cleanup()
        self.bridge.forget(self)

    def deliver_uplink(self, frame: bytes) -> bool:
        """Queue an attributed uplink for this device's reader (order kept); False when the device floods."""
        try:
            self._inbox.put_nowait(frame)
        except asyncio.QueueFull:
            return False
        return True

    async def _read_loop(self) -> None:
        link = self.link
        while not link.closing():
            frame = await self._inbox.get()
            await link.feed_data(frame)

    async def start(self, principal: Principal, device: str) -> bool:
        self.link.start()
        if not await self.link.open(principal, device):
            return False
        self._reader = asyncio.create_task(self._read_loop())
        return True

    def check_renew(self) -> None:
        """Refused: the token would cross the broker. Fresh credentials (over HTTPS) renew the link (H3)."""
        raise WsimError(
            ErrorCode.INVALID,
            "auth.renew is not accepted over MQTT (the token would cross the broker): "
            "fetch new credentials over HTTPS with the fresh token",
        )


class MqttBridgeTransport:
    """See the module docstring. Weakens nothing in the interface on delivery; on identity it depends on the
    server secret staying secret (as the access tokens do)."""

    name = "mqtt"

    def __init__(self, config: MqttTransportConfig, port: NodePort) -> None:
        self.config = config
        self.port = port
        self._secret = port.secret
        self.verifier = UplinkVerifier(self._secret, config.topic_prefix, int(config.replay_window_s * 1000))
        self._links: dict[tuple[int, str], MqttLink] = {}
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._stopping = False
        self._opening: dict[tuple[int, str], asyncio.Future[MqttLink | None]] = {}
        self._pending_tasks: set[asyncio.Future[None]] = set()
        self._down_n = port.clock.wall_ms() * 1000  # downlink counter: above any earlier run's (1000/ms)
        self._provisioned: set[str] = set()
        self._control_waits: dict[str, asyncio.Future[str | None]] = {}
        self._control_seq = 0
        client_id = config.client_id or f"wsim-bridge-{config.topic_prefix}-{port.node_name}"
        self.client_id = _CLIENT_ID_UNSAFE.sub("-", client_id)[:64]

    # ---------------------------------------------------------------- topics and credentials
    def broker_account(self, downlink: str) -> tuple[str, str]:
        """The broker username and password of one device login (derived: re-provisioning is idempotent)."""
        tag = downlink.rsplit("/", 1)[1]
        password = hmac.new(self._secret, b"wsim-mqtt-broker|" + tag.encode(), hashlib.sha256).hexdigest()
        return f"wsim-d-{tag}", password

    async def provision(self, downlink: str) -> tuple[str, str]:
        """Create the device login's broker account (dynamic security): it may subscribe to ``downlink`` only,
        literally, and publish uplinks through the shared device role."""
        username, password = self.broker_account(downlink)
        if username in self._provisioned:
            return username, password
        commands = [
            {
                "command": "createRole",
                "rolename": username,
                "acls": [{"acltype": "subscribeLiteral", "topic": downlink, "allow": True}],
            },
            {
                "command": "createClient",
                "username": username,
                "password": password,
                "roles": [{"rolename": username}, {"rolename": self.config.device_role}],
            },
        ]
        await self._control(commands)
        self._provisioned.add(username)
        return username, password

    async def deprovision(self, downlink: str) -> None:
        """Delete a logged-out login's broker account (the broker disconnects it): its topic is dead."""
        if self.config.provision != "dynsec":
            return
        username, _ = self.broker_account(downlink)
        self._provisioned.discard(username)
        commands = [
            {"command": "deleteClient", "username": username},
            {"command": "deleteRole", "rolename": username},
        ]
        try:
            await self._control(commands)
        except WsimError as exc:
            log.warning("MQTT: broker account %s not deleted: %s", username, exc)

    async def _control(self, commands: list[dict[str, Any]]) -> None:
        """Send dynamic-security commands and wait for their answers; an existing role or client is fine."""
        loop = asyncio.get_running_loop()
        waits = []
        for cmd in commands:
            self._control_seq += 1
            cmd["correlationData"] = cid = f"{self.client_id}-{self._control_seq}"
            self._control_waits[cid] = fut = loop.create_future()
            waits.append((cid, fut))
        try:
            await self.publish(_CONTROL_TOPIC, orjson.dumps({"commands": commands}))
            for _, fut in waits:
                error = await asyncio.wait_for(fut, 10)
                if error and "already exists" not in error and "not found" not in error:
                    raise WsimError(
                        ErrorCode.UNAVAILABLE, f"MQTT broker refused to provision the device: {error}"
                    )
        except (TimeoutError, aiomqtt.MqttError) as exc:
            raise WsimError(
                ErrorCode.UNAVAILABLE, f"MQTT broker did not provision the device: {exc!r}"
            ) from None
        finally:
            for cid, _ in waits:
                self._control_waits.pop(cid, None)

    def _on_control(self, payload: bytes) -> None:
        try:
            responses = orjson.loads(payload).get("responses", [])
        except (orjson.JSONDecodeError, AttributeError):
            return
        for r in responses:
            fut = self._control_waits.get(str(r.get("correlationData")))
            if fut is not None and not fut.done():
                fut.set_result(r.get("error"))

    def downlink_topic(self, user: int, device: str, family: str) -> str:
        return f"{self.config.topic_prefix}/down/{downlink_tag(self._secret, user, device, family)}"

    def uplink_topic(self, cred: Credential) -> str:
        return f"{self.config.topic_prefix}/up/{cred.text}"

    async def credentials(
        self,
        body: CredentialsRequest,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> CredentialsOut:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise WsimError(ErrorCode.UNAUTHORIZED, "missing bearer token")
        principal = await self.port.verify_access(credentials.credentials)
        cred = issue_credential(
            self._secret, principal.user_id, body.device, principal.family, principal.exp_ms
        )
        cfg = self.config
        downlink = self.downlink_topic(principal.user_id, body.device, principal.family)
        username = password = None
        if cfg.provision == "dynsec":
            username, password = await self.provision(downlink)
        return CredentialsOut(
            broker=BrokerOut(host=cfg.public_host or cfg.host, port=cfg.public_port or cfg.port),
            uplink=self.uplink_topic(cred),
            downlink=downlink,
            key=device_key(self._secret, cred),
            expires=cred.exp_ms,
            down_floor=self._down_n,
            username=username,
            password=password,
            payload="<ts ms> <hex HMAC-SHA256(key, uplink topic + '\\n' + ts + '\\n' + json)> <json frame>",
        )

    # ---------------------------------------------------------------- broker I/O
    async def publish(self, topic: str, payload: bytes) -> None:
        client = self._client
        if client is None:
            raise aiomqtt.MqttError("bridge is not connected to the broker")
        await client.publish(topic, payload, qos=1, timeout=10)

    async def publish_signed(self, topic: str, key: str, frame: bytes) -> None:
        """A downlink the device can authenticate: ``<n> <mac> <json>``, ``n`` increasing (H2)."""
        self._down_n = n = max(self._down_n + 1, self.port.clock.wall_ms() * 1000)
        await self.publish(topic, signed_payload(key, topic, n, frame))

    async def _run(self) -> None:
        cfg = self.config
        backoff = 0.5
        while not self._stopping:
            try:
                async with aiomqtt.Client(
                    cfg.host,
                    cfg.port,
                    username=cfg.username,
                    password=cfg.password,
                    identifier=self.client_id,
                    clean_session=False,
                    keepalive=cfg.keepalive_s,
                    max_queued_incoming_messages=100_000,
                    # paho leaves Nagle's algorithm on: interleaved PUBACKs and PUBLISHes then wait for the broker's
                    # delayed ACK (measured: 20-60 ms per downlink instead of ~1 ms).
                    socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
                ) as client:
                    await client.subscribe(f"{cfg.topic_prefix}/up/+", qos=1)
                    if cfg.provision == "dynsec":
                        await client.subscribe(_CONTROL_RESPONSES, qos=1)
                    self._client = client
                    self._ready.set()
                    backoff = 0.5
                    async for message in client.messages:
                        self._on_message(message)
            except aiomqtt.MqttError as exc:
                self._client = None
                if self.stopping():
                    return
                log.warning("MQTT bridge lost the broker at %s:%s (%s); retrying", cfg.host, cfg.port, exc)
                # Downlinks published meanwhile failed and closed their links; devices resync on the next
                # auth.ok. Uplinks wait in the broker (persistent session).
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    def stopping(self) -> bool:
        return self._stopping

    def _on_message(self, message: aiomqtt.Message) -> None:
        metrics = self.port.metrics
        payload = message.payload
        data = bytes(payload) if isinstance(payload, bytes | bytearray) else str(payload).encode()
        if message.topic.value == _CONTROL_RESPONSES:
            self._on_control(data)
            return
        metrics.transport_requests.labels(self.name).inc()
        try:
            up = self.verifier.verify(message.topic.value, data, self.port.clock.wall_ms())
        except UplinkRefusedError as exc:
            metrics.transport_refused.labels(self.name, exc.reason).inc()
            log.debug("refused MQTT uplink on %s: %s", message.topic.value[:80], exc.message)
            return
        cred = up.credential
        key = (cred.user, cred.device)
        link = self._links.get(key)
        hello = _is_hello(up.frame)
        if hello and link is not None and not link.closing():
            link.quiet = link.family == cred.family  # same login: same downlink, the device is listening
            link.close(CloseCode.REPLACED, "the same device attached again")
            link = None
        if link is not None and link.family == cred.family and not link.closing():
            link.link.renew(cred.exp_ms)
            if not link.deliver_uplink(up.frame):
                metrics.transport_refused.labels(self.name, "flood").inc()
            return
        # A new link (first uplink, or after a reap / another login): opened in order with later uplinks.
        opening = self._opening.get(key)
        if opening is None:
            opening = asyncio.ensure_future(self._open_link(cred))
            self._opening[key] = opening
            opening.add_done_callback(functools.partial(self._opened, key))
        if hello:
            return  # the hello only (re)attaches: the new link answers auth.ok
        frame = up.frame
        task = asyncio.ensure_future(self._after_open(opening, frame))
        self._pending_tasks.add(task)
        task.add_done_callback(self._pending_tasks.discard)

    def _opened(self, key: tuple[int, str], _: object) -> None:
        self._opening.pop(key, None)

    async def _after_open(self, opening: asyncio.Future[MqttLink | None], frame: bytes) -> None:
        link = await opening
        if link is not None and not link.deliver_uplink(frame):
            self.port.metrics.transport_refused.labels(self.name, "flood").inc()

    async def _open_link(self, cred: Credential) -> MqttLink | None:
        port = self.port
        if not await port.session_active(cred.family):
            port.metrics.transport_refused.labels(self.name, "logged_out").inc()
            await self._tell(
                cred, ErrorFrame(code=ErrorCode.UNAUTHORIZED.value, message="session has been logged out")
            )
            await self.deprovision(self.downlink_topic(cred.user, cred.device, cred.family))
            return None
        link = MqttLink(
            port,
            self,
            self.downlink_topic(cred.user, cred.device, cred.family),
            device_key(self._secret, cred),
        )
        old = self._links.get((cred.user, cred.device))
        self._links[(cred.user, cred.device)] = link
        if old is not None and not old.closing():
            old.quiet = old.downlink == link.downlink
            old.close(CloseCode.REPLACED, "the same device attached again")
        if not await link.start(Principal(cred.user, cred.family, cred.exp_ms), cred.device):
            return None
        return link

    async def _tell(self, cred: Credential, frame: ErrorFrame) -> None:
        with suppress(aiomqtt.MqttError):
            await self.publish_signed(
                self.downlink_topic(cred.user, cred.device, cred.family),
                device_key(self._secret, cred),
                encode_obj(frame.model_dump(exclude_none=True)).encode(),
            )

    def forget(self, link: MqttLink) -> None:
        key = (link.link.user, link.link.device)
        if self._links.get(key) is link:
            del self._links[key]

    # ---------------------------------------------------------------- Transport
    def routes(self) -> Sequence[BaseRoute]:
        router = APIRouter(tags=["transports"])
        router.add_api_route(
            self.config.credentials_path,
            self.credentials,
            methods=["POST"],
            response_model=CredentialsOut,
            summary="MQTT: topics and signing key for one device (prove who you are with your access token)",
            responses={400: {"model": ErrorOut}, 401: {"model": ErrorOut}, 422: {"model": ErrorOut}},
        )
        return router.routes

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.name,
            "broker": {
                "host": self.config.public_host or self.config.host,
                "port": self.config.public_port or self.config.port,
            },
            "credentials": self.config.credentials_path,
            "topics": {
                "uplink": f"{self.config.topic_prefix}/up/<credential>",
                "downlink": "from credentials",
            },
        }

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"mqtt-bridge-{self.client_id}")
        ready = asyncio.ensure_future(self._ready.wait())
        done, _ = await asyncio.wait({ready, self._task}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            self._stopping = True
            await cancel_and_wait(self._task)
            raise RuntimeError(
                f"MQTT transport: broker at {self.config.host}:{self.config.port} not reachable within 15 s"
            )

    async def close(self) -> None:
        for link in list(self._links.values()):
            link.close(CloseCode.GOING_AWAY, "server shutting down")
        for link in list(self._links.values()):
            with suppress(Exception):
                await link.link.wait_closed(2.0)
        self._stopping = True
        await cancel_and_wait(self._task)
        self._client = None
