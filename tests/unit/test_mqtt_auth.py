"""MQTT uplink attribution (core/protocol/mqtt_auth.py): what the bridge accepts and why it refuses the rest."""

from __future__ import annotations

import pytest

from core.protocol.mqtt_auth import (
    DownlinkRefusedError,
    DownlinkVerifier,
    UplinkRefusedError,
    UplinkVerifier,
    device_key,
    downlink_tag,
    issue_credential,
    signed_payload,
    verify_credential,
)

SECRET = b"s" * 32
NOW = 1_764_216_000_000
FRAME = b'{"type":"ping"}'


def setup() -> tuple[UplinkVerifier, str, str]:
    cred = issue_credential(SECRET, 42, "phone", "fam1", NOW + 60_000)
    return UplinkVerifier(SECRET, "wsim", 120_000), f"wsim/up/{cred.text}", device_key(SECRET, cred)


def test_a_signed_uplink_is_attributed() -> None:
    v, topic, key = setup()
    up = v.verify(topic, signed_payload(key, topic, NOW, FRAME), NOW)
    assert (up.credential.user, up.credential.device, up.credential.family) == (42, "phone", "fam1")
    assert up.frame == FRAME


def _reason(v: UplinkVerifier, topic: str, payload: bytes) -> str:
    with pytest.raises(UplinkRefusedError) as err:
        v.verify(topic, payload, NOW)
    return err.value.reason


def test_refusals() -> None:
    v, topic, key = setup()
    assert _reason(v, topic, signed_payload("0" * 64, topic, NOW, FRAME)) == "mac"  # the wrong key
    # one character of the sealed credential changed (not the last one: its low bits may be padding)
    tampered = topic[:-5] + ("A" if topic[-5] != "A" else "B") + topic[-4:]
    assert _reason(v, tampered, signed_payload(key, tampered, NOW, FRAME)) == "credential"
    assert _reason(v, "wsim/down/42", signed_payload(key, "wsim/down/42", NOW, FRAME)) == "topic"
    assert _reason(v, topic, b"not signed") == "format"


def test_signature_binds_the_topic() -> None:
    v, topic, key = setup()
    other = issue_credential(SECRET, 7, "laptop", "fam2", NOW + 60_000)
    other_topic = f"wsim/up/{other.text}"
    with pytest.raises(UplinkRefusedError) as err:
        v.verify(other_topic, signed_payload(key, topic, NOW, FRAME), NOW)
    assert err.value.reason == "mac"


def test_stale_expired_and_replayed() -> None:
    v, topic, key = setup()
    with pytest.raises(UplinkRefusedError, match="timestamp") as err:
        v.verify(topic, signed_payload(key, topic, NOW - 121_000, FRAME), NOW)
    assert err.value.reason == "stale"
    payload = signed_payload(key, topic, NOW, FRAME)
    v.verify(topic, payload, NOW)
    with pytest.raises(UplinkRefusedError) as err:
        v.verify(topic, payload, NOW + 1000)
    assert err.value.reason == "replay"
    with pytest.raises(UplinkRefusedError) as err:
        v.verify(topic, signed_payload(key, topic, NOW + 61_000, FRAME), NOW + 61_000)
    assert err.value.reason == "expired"


def test_credentials_and_tags_depend_on_the_secret() -> None:
    cred = issue_credential(SECRET, 42, "phone", "fam1", NOW)
    with pytest.raises(UplinkRefusedError):
        verify_credential(b"another secret", cred.text)
    assert verify_credential(SECRET, cred.text) == cred
    assert downlink_tag(SECRET, 42, "phone", "f") != downlink_tag(b"another secret", 42, "phone", "f")
    assert downlink_tag(SECRET, 42, "phone", "f") != downlink_tag(SECRET, 42, "laptop", "f")
    assert downlink_tag(SECRET, 42, "phone", "f") != downlink_tag(SECRET, 42, "phone", "g")  # per login (H6)


def test_credential_hides_who_and_which_login() -> None:
    """H6: the credential (the uplink topic) is sealed: no user, device or session id readable in it."""
    import base64

    cred = issue_credential(SECRET, 42, "phone", "sessionid0123", NOW)
    raw = base64.urlsafe_b64decode(cred.text + "=" * (-len(cred.text) % 4))
    assert b"sessionid0123" not in raw and b"phone" not in raw and "sessionid0123" not in cred.text
    assert issue_credential(SECRET, 42, "phone", "sessionid0123", NOW).text != cred.text  # random nonce
    assert device_key(SECRET, cred) == device_key(
        SECRET, issue_credential(SECRET, 42, "phone", "sessionid0123", 1)
    )


def test_downlinks_verify_only_when_signed_and_fresh() -> None:
    """H2: what the device accepts on its downlink."""
    cred = issue_credential(SECRET, 42, "phone", "fam1", NOW)
    key, topic = device_key(SECRET, cred), "wsim/down/tag"
    v = DownlinkVerifier(key, topic, floor=10)
    assert v.verify(signed_payload(key, topic, 11, FRAME)) == FRAME
    for bad in (
        signed_payload(key, topic, 11, FRAME),  # replay
        signed_payload(key, topic, 5, FRAME),  # below the floor
        signed_payload("0" * 64, topic, 12, FRAME),  # not the bridge
        signed_payload(key, "wsim/down/other", 12, FRAME),  # moved from another topic
        FRAME,  # unsigned
    ):
        with pytest.raises(DownlinkRefusedError):
            v.verify(bad)
    assert v.verify(signed_payload(key, topic, 12, FRAME)) == FRAME
