"""Attribution of MQTT uplinks and authenticity of downlinks (sans-I/O): credentials, keys, topics, MACs.

Threat model (docs/security.md, "MQTT and the buses"): the broker is shared. Where it enforces per-device accounts
and ACLs (docker/mosquitto/, the bridge's ``provision: dynsec``) only the device and the server read and write its
topics; where it is open (anonymous, no ACL) anyone can publish anywhere and subscribe to ``#``. Nothing below
relies on the ACLs, so an open broker loses confidentiality but never authenticity:

1. the device proves who it is with its access token over HTTP (``POST /api/transports/mqtt/credentials``) and
   receives a *credential* (opaque: the user, device, login session and expiry, encrypted and authenticated with
   AES-GCM under a key derived from the server secret, so a reader of the topic learns none of them) and a *key*
   (secret: HMAC of (user, device, login session) under the server's secret, so the bridge recomputes it
   statelessly and it survives a credential refresh);
2. every uplink is published to ``<prefix>/up/<credential>`` with the payload ``<ts> <mac> <json frame>``, where
   ``mac = HMAC-SHA256(key, topic "\\n" ts "\\n" json)``; the bridge refuses an uplink whose credential,
   expiry, MAC, timestamp window or freshness (no replay inside the window) does not check out, and one whose
   login session was logged out;
3. downlinks go to ``<prefix>/down/<tag>``, the tag derived from the server secret and the login session (a new
   login gets a new topic; nothing is published on a logged-out one) and are signed the same way with the same
   key, ``<n> <mac> <json>``, ``n`` increasing per bridge: the device drops a downlink whose MAC does not verify
   or whose ``n`` is not above the last one it accepted (and the ``down_floor`` it was given), so an injected,
   retained or replayed downlink is never shown. The topics differ, so an uplink cannot pass as a downlink.

The access token never travels through the broker (``auth.renew`` is refused over MQTT): whoever read it could use
the REST API as its owner. A replay of a captured uplink inside the window is refused by the MAC cache, and a
replayed ``message.send`` would be a no-op anyway (its ``cmid`` is the idempotency key).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_CRED_CONTEXT = b"wsim-mqtt-credential|"
_KEY_CONTEXT = b"wsim-mqtt-key|"
_DOWN_CONTEXT = b"wsim-mqtt-down|"
_SEAL_CONTEXT = b"wsim-mqtt-seal|"
_NONCE_BYTES = 12


class UplinkRefusedError(Exception):
    """An uplink the bridge cannot attribute; ``reason`` is a short label for metrics."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class Credential:
    user: int
    device: str
    family: str
    exp_ms: int
    text: str  # as it appears in the uplink topic


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, context: bytes, data: bytes) -> bytes:
    return hmac.new(secret, context + data, hashlib.sha256).digest()


@functools.lru_cache(maxsize=8)
def _aead(secret: bytes) -> AESGCM:
    # cryptography ships with the mqtt extra; imported here so the signing helpers stay import-light.
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(_mac(secret, _SEAL_CONTEXT, b"aes-256-gcm"))


def issue_credential(secret: bytes, user: int, device: str, family: str, exp_ms: int) -> Credential:
    """A credential whose text reveals nothing (AES-GCM): the topic names no user, device or login session."""
    claims = orjson.dumps({"u": str(user), "d": device, "f": family, "e": exp_ms})
    nonce = secrets.token_bytes(_NONCE_BYTES)
    sealed = _aead(secret).encrypt(nonce, claims, _CRED_CONTEXT)
    return Credential(user, device, family, exp_ms, _b64(nonce + sealed))


def verify_credential(secret: bytes, text: str) -> Credential:
    """The claims of a credential sealed by the server (expiry is checked by the caller)."""
    from cryptography.exceptions import InvalidTag

    try:
        raw = _unb64(text)
    except ValueError:
        raise UplinkRefusedError("credential", "malformed credential") from None
    if len(raw) <= _NONCE_BYTES + 16:
        raise UplinkRefusedError("credential", "malformed credential")
    try:
        claims = _aead(secret).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _CRED_CONTEXT)
    except InvalidTag:
        raise UplinkRefusedError("credential", "credential was not issued by this server") from None
    try:
        obj = orjson.loads(claims)
        return Credential(int(obj["u"]), str(obj["d"]), str(obj["f"]), int(obj["e"]), text)
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):  # pragma: no cover - sealed by us
        raise UplinkRefusedError("credential", "malformed credential claims") from None


def device_key(secret: bytes, cred: Credential) -> str:
    """The device's key for one login session (ASCII hex, used as the HMAC key's bytes): the same across
    credential refreshes of that login, so the downlink it verifies keeps working; useless without a live
    credential for uplinks."""
    return _mac(secret, _KEY_CONTEXT, f"{cred.user}|{cred.device}|{cred.family}".encode()).hex()


def downlink_tag(secret: bytes, user: int, device: str, family: str) -> str:
    """Per device and login session: a new login gets a new downlink topic, a logged-out one stays silent."""
    return _b64(_mac(secret, _DOWN_CONTEXT, f"{user}|{device}|{family}".encode())[:16])


def sign(key: str, topic: str, ts_ms: int, frame: bytes) -> str:
    return hmac.new(key.encode(), f"{topic}\n{ts_ms}\n".encode() + frame, hashlib.sha256).hexdigest()


def signed_payload(key: str, topic: str, ts_ms: int, frame: bytes) -> bytes:
    """What a device publishes: ``<ts> <mac> <json>`` (the bridge signs downlinks the same way, ``n`` for ts)."""
    return f"{ts_ms} {sign(key, topic, ts_ms, frame)} ".encode() + frame


@dataclass(frozen=True, slots=True)
class Uplink:
    credential: Credential
    ts_ms: int
    mac: str
    frame: bytes


def parse_uplink(payload: bytes) -> tuple[int, str, bytes]:
    parts = payload.split(b" ", 2)
    if len(parts) != 3 or not parts[0].isdigit() or len(parts[1]) != 64:
        raise UplinkRefusedError("format", "payload must be '<ts> <mac> <json frame>'")
    try:
        mac = parts[1].decode("ascii")
    except UnicodeDecodeError:
        raise UplinkRefusedError("format", "mac must be hex") from None
    return int(parts[0]), mac.lower(), parts[2]


class UplinkVerifier:
    """Checks uplinks: credential, expiry, MAC, timestamp window, replay. Pure: ``now_ms`` is passed in."""

    def __init__(
        self, secret: bytes, topic_prefix: str, window_ms: int, max_remembered: int = 100_000
    ) -> None:
        self._secret = secret
        self._up = f"{topic_prefix}/up/"
        self.window_ms = window_ms
        self._seen: OrderedDict[str, int] = OrderedDict()  # mac -> ts, oldest first
        self._max = max_remembered

    def verify(self, topic: str, payload: bytes, now_ms: int) -> Uplink:
        if not topic.startswith(self._up):
            raise UplinkRefusedError("topic", "not an uplink topic")
        cred = verify_credential(self._secret, topic[len(self._up) :])
        ts, mac, frame = parse_uplink(payload)
        key = device_key(self._secret, cred)
        if not hmac.compare_digest(sign(key, topic, ts, frame), mac):
            raise UplinkRefusedError("mac", "signature does not match")
        if cred.exp_ms <= now_ms:
            raise UplinkRefusedError(
                "expired", "credential expired: fetch a new one with a fresh access token"
            )
        if abs(now_ms - ts) > self.window_ms:
            raise UplinkRefusedError(
                "stale", f"timestamp outside +-{self.window_ms} ms of the server's clock"
            )
        self._forget_older_than(now_ms - self.window_ms)
        if mac in self._seen:
            raise UplinkRefusedError("replay", "this uplink was already received")
        self._seen[mac] = ts
        if len(self._seen) > self._max:
            self._seen.popitem(last=False)
        return Uplink(cred, ts, mac, frame)

    def _forget_older_than(self, limit_ms: int) -> None:
        seen = self._seen
        while seen:
            _, ts = next(iter(seen.items()))
            if ts >= limit_ms:
                break
            seen.popitem(last=False)


class DownlinkRefusedError(Exception):
    """A downlink a device must not act on (not signed by the bridge with its key, or not fresh)."""


class DownlinkVerifier:
    """Device side: accepts a downlink only if its MAC verifies under the device key and its ``n`` is above
    every ``n`` accepted before (and above ``floor``, the ``down_floor`` of the credentials)."""

    def __init__(self, key: str, topic: str, floor: int = 0) -> None:
        self._key = key
        self.topic = topic
        self.last = floor

    def verify(self, payload: bytes) -> bytes:
        try:
            n, mac, frame = parse_uplink(payload)
        except UplinkRefusedError as exc:
            raise DownlinkRefusedError(exc.message) from None
        if not hmac.compare_digest(sign(self._key, self.topic, n, frame), mac):
            raise DownlinkRefusedError("downlink signature does not match (not from the bridge)")
        if n <= self.last:
            raise DownlinkRefusedError(f"downlink {n} is not newer than {self.last} (a replay)")
        self.last = n
        return frame
