"""Attribution of MQTT uplinks (sans-I/O): credentials, keys, topics and signatures of the MQTT bridge.

Threat model (docs/protocol.md, "MQTT"): the broker is shared and may be open (Mosquitto with
``allow_anonymous true`` and no ACL, as here), so anyone can publish on any topic and subscribe to ``#``. Topic
names are therefore not secrets and the access token never travels over the broker (whoever reads it could use
the REST API as its owner). Instead:

1. the device proves who it is with its access token over HTTP (``POST /api/transports/mqtt/credentials``) and
   receives a *credential* (public: it names the user, device, login session and expiry, signed by the server) and
   a *key* (secret: HMAC of the credential under the server's secret, so the bridge recomputes it statelessly);
2. every uplink is published to ``<prefix>/up/<credential>`` with the payload ``<ts> <mac> <json frame>``, where
   ``mac = HMAC-SHA256(key, topic "\\n" ts "\\n" json)``; the bridge refuses an uplink whose credential signature,
   expiry, MAC, timestamp window or freshness (no replay inside the window) does not check out, and one whose login
   session was logged out;
3. downlinks go to ``<prefix>/down/<user>/<device>/<tag>``, the tag derived from the server secret: unguessable, so
   it keeps the device's traffic out of reach wherever the broker forbids wildcard subscriptions (an ACL), but on
   an open broker a ``#`` subscriber reads it. Confidentiality needs broker ACLs or TLS; attribution does not.

No one can post as someone else through the broker: forging an uplink needs the key, which only the server and the
device (over HTTP) ever hold. A replay of a captured uplink inside the window is refused by the MAC cache, and a
replayed ``message.send`` would be a no-op anyway (its ``cmid`` is the idempotency key).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections import OrderedDict
from dataclasses import dataclass

import orjson

_CRED_CONTEXT = b"wsim-mqtt-credential|"
_KEY_CONTEXT = b"wsim-mqtt-key|"
_DOWN_CONTEXT = b"wsim-mqtt-down|"


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


def issue_credential(secret: bytes, user: int, device: str, family: str, exp_ms: int) -> Credential:
    claims = _b64(orjson.dumps({"u": str(user), "d": device, "f": family, "e": exp_ms}))
    sig = _b64(_mac(secret, _CRED_CONTEXT, claims.encode())[:18])
    return Credential(user, device, family, exp_ms, f"{claims}.{sig}")


def verify_credential(secret: bytes, text: str) -> Credential:
    """The claims of a credential whose signature is the server's (expiry is checked by the caller)."""
    claims, _, sig = text.partition(".")
    if not claims or not sig:
        raise UplinkRefusedError("credential", "malformed credential")
    expected = _b64(_mac(secret, _CRED_CONTEXT, claims.encode())[:18])
    if not hmac.compare_digest(expected, sig):
        raise UplinkRefusedError("credential", "credential signature does not match")
    try:
        obj = orjson.loads(_unb64(claims))
        return Credential(int(obj["u"]), str(obj["d"]), str(obj["f"]), int(obj["e"]), text)
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):  # pragma: no cover - signed by us
        raise UplinkRefusedError("credential", "malformed credential claims") from None


def device_key(secret: bytes, credential: str) -> str:
    """The device's signing key, as the hex text devices use as their HMAC key (ASCII bytes)."""
    return _mac(secret, _KEY_CONTEXT, credential.encode()).hex()


def downlink_tag(secret: bytes, user: int, device: str) -> str:
    return _b64(_mac(secret, _DOWN_CONTEXT, f"{user}|{device}".encode())[:16])


def sign(key: str, topic: str, ts_ms: int, frame: bytes) -> str:
    return hmac.new(key.encode(), f"{topic}\n{ts_ms}\n".encode() + frame, hashlib.sha256).hexdigest()


def signed_payload(key: str, topic: str, ts_ms: int, frame: bytes) -> bytes:
    """What a device publishes: ``<ts> <mac> <json>``."""
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
        key = device_key(self._secret, cred.text)
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
