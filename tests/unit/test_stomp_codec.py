"""STOMP 1.2 codec and ack ledger (core/protocol/stomp.py): the framing rules, fed byte by byte and whole."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.protocol.stomp import (
    AckLedger,
    HeartBeat,
    StompError,
    StompFrame,
    StompParser,
    escape,
    negotiate_heart_beat,
    parse_heart_beat,
    serialize,
    unescape,
)


def frames(events: list[object]) -> list[StompFrame]:
    return [e for e in events if isinstance(e, StompFrame)]


def test_parse_send_without_content_length() -> None:
    [f] = frames(StompParser().feed(b"SEND\ndestination:/conv/d:1:2\n\nhello\x00"))
    assert f.command == "SEND" and f.headers == {"destination": "/conv/d:1:2"} and f.body == b"hello"


def test_crlf_eols_and_heart_beats_between_frames() -> None:
    events = StompParser().feed(b"\r\n\nSEND\r\ndestination:/a\r\n\r\nx\x00\n\nACK\nid:1\n\n\x00\r\n")
    assert [type(e).__name__ for e in events] == [
        "HeartBeat",
        "StompFrame",
        "HeartBeat",
        "StompFrame",
        "HeartBeat",
    ]
    assert [f.command for f in frames(events)] == ["SEND", "ACK"]
    assert frames(events)[0].headers == {"destination": "/a"}


def test_content_length_body_may_contain_nul() -> None:
    [f] = frames(StompParser().feed(b"SEND\ncontent-length:3\n\na\x00b\x00"))
    assert f.body == b"a\x00b"


def test_body_longer_than_content_length_is_an_error() -> None:
    with pytest.raises(StompError, match="content-length"):
        StompParser().feed(b"SEND\ncontent-length:1\n\nab\x00")


def test_partial_frames_across_feeds() -> None:
    p = StompParser()
    data = serialize("SEND", {"destination": "/app/message.send"}, b'{"a":1}')
    out: list[object] = []
    for i in range(len(data)):
        out += p.feed(data[i : i + 1])
    [f] = frames(out)
    assert f.body == b'{"a":1}' and f.headers["content-length"] == "7"


def test_repeated_header_first_wins_and_escapes_decode() -> None:
    [f] = frames(StompParser().feed(b"SEND\nx:a\\cb\\nc\\\\d\\r\nx:second\n\n\x00"))
    assert f.headers["x"] == "a:b\nc\\d\r"


def test_connect_headers_are_not_unescaped() -> None:
    [f] = frames(StompParser().feed(b"CONNECT\npasscode:a\\cb\n\n\x00"))
    assert f.headers["passcode"] == "a\\cb"


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"FROB\n\n\x00", "unknown command"),
        (b"SEND\nno-colon\n\n\x00", "malformed header"),
        (b"SEND\nx:\\t\n\n\x00", "undefined escape"),
        (b"SEND\ncontent-length:abc\n\n\x00", "content-length"),
        (b"SEND\n\xff:1\n\n\x00", "UTF-8"),
    ],
)
def test_malformed_frames(data: bytes, match: str) -> None:
    with pytest.raises(StompError, match=match):
        StompParser().feed(data)


def test_frame_size_is_bounded_before_the_frame_completes() -> None:
    p = StompParser(max_frame_bytes=100)
    with pytest.raises(StompError, match="larger"):
        p.feed(b"SEND\ndestination:/a\n\n" + b"x" * 200)
    with pytest.raises(StompError, match="larger"):
        StompParser(max_frame_bytes=100).feed(b"SEND\ncontent-length:500\n\n")


def test_serialize_escapes_except_connected() -> None:
    assert serialize("MESSAGE", {"k": "a:b\n"}) == b"MESSAGE\nk:a\\cb\\n\n\n\x00"
    assert serialize("CONNECTED", {"k": "a:b"}) == b"CONNECTED\nk:a:b\n\n\x00"


@given(
    st.dictionaries(
        st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=10),
        st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20),
        max_size=5,
    ),
    st.binary(max_size=200),
)
def test_round_trip(headers: dict[str, str], body: bytes) -> None:
    headers = {k: v for k, v in headers.items() if k != "content-length"}
    [f] = frames(StompParser(max_frame_bytes=1 << 20).feed(serialize("MESSAGE", headers, body)))
    assert f.body == body
    assert {k: v for k, v in f.headers.items() if k != "content-length"} == headers


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
def test_escape_round_trip(value: str) -> None:
    assert unescape(escape(value)) == value


def test_heart_beat_negotiation() -> None:
    assert parse_heart_beat(None) == (0, 0)
    assert parse_heart_beat("10000,5000") == (10000, 5000)
    with pytest.raises(StompError):
        parse_heart_beat("ten")
    # client can send every 10 s and wants every 5 s; server can send every 30 s and wants every 30 s
    assert negotiate_heart_beat((10000, 5000), (30000, 30000)) == (30000, 30000)
    assert negotiate_heart_beat((0, 5000), (30000, 30000)) == (0, 30000)
    assert negotiate_heart_beat((10000, 0), (30000, 30000)) == (30000, 0)
    assert negotiate_heart_beat((60000, 60000), (30000, 30000)) == (60000, 60000)


def test_heartbeat_event_type() -> None:
    assert StompParser().feed(b"\n") == [HeartBeat()]


# ---------------------------------------------------------------------------------------------- ack ledger


def test_individual_acks_move_the_mark_only_over_a_contiguous_prefix() -> None:
    led = AckLedger()
    for n, seq in enumerate((5, 6, 7), 1):
        led.given(f"a{n}", "d:1:2", seq)
    assert led.ack("a2") == [("d:1:2", 6)]
    assert led.marks() == []  # 5 is still unacked: the mark cannot pass it
    assert led.ack("a1") == [("d:1:2", 5)]
    assert led.marks() == [("d:1:2", 6)]
    assert led.ack("a3") == [("d:1:2", 7)]
    assert led.marks() == [("d:1:2", 7)]
    assert led.marks() == []  # reported once
    assert led.ack("a3") == []  # a repeated ACK settles nothing


def test_client_mode_ack_is_cumulative_per_subscription() -> None:
    led = AckLedger()
    led.given("a1", "g:9", 1, cumulative_on="s1")
    led.given("b1", "d:1:2", 4)  # client-individual on another subscription
    led.given("a2", "g:9", 2, cumulative_on="s1")
    led.given("a3", "g:9", 3, cumulative_on="s1")
    assert led.ack("a2") == [("g:9", 1), ("g:9", 2)]
    assert led.known("b1") and not led.known("a1")
    assert led.marks() == [("g:9", 2)]
    assert led.ack("a3") == [("g:9", 3)]


def test_nack_keeps_the_message_unacknowledged() -> None:
    led = AckLedger()
    led.given("a1", "d:1:2", 1)
    led.given("a2", "d:1:2", 2)
    assert led.nack("a1") == ("d:1:2", 1)
    led.ack("a2")
    assert led.marks() == []  # 1 was refused: not delivered
    led.given("a3", "d:1:2", 1)  # the retry policy redelivers it
    led.ack("a3")
    assert led.marks() == [("d:1:2", 2)]


def test_ledger_is_bounded() -> None:
    led = AckLedger(max_outstanding=3)
    for i in range(1, 6):
        led.given(f"a{i}", "d:1:2", i)
    assert len(led) == 3 and not led.known("a1") and led.known("a5")
