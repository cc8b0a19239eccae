"""Fuzz the decoders that face the network: the JSON frame codec, the session that wraps it, and the STOMP parser.

Property: arbitrary input never raises anything but the documented protocol error (``FrameError`` with
``bad_frame``/``invalid``; ``StompError``), and the session never raises at all: it answers with error frames and,
at worst, one of the documented close codes."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import CloseCode, ErrorCode
from core.protocol import codec
from core.protocol.frames import CLIENT_FRAME_TYPES
from core.protocol.session import Close, Handle, SendFrame, ServerSession, SessionLimits
from core.protocol.stomp import CLIENT_COMMANDS, StompError, StompEvent, StompParser
from strategies.ack.tracking import RetryingTracker
from tests.support import policies

FUZZ = settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
FIELDS = [
    "type",
    "cmid",
    "conv",
    "text",
    "kind",
    "file",
    "seq",
    "id",
    "cursors",
    "token",
    "device",
    "ts",
    "limit",
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def frame_like(draw: st.DrawFn) -> bytes:
    """JSON objects that look like frames: a real type most of the time, real field names with any values."""
    obj: dict[str, Any] = draw(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6))
    if draw(st.booleans()):
        obj["type"] = draw(st.sampled_from(CLIENT_FRAME_TYPES))
    return json.dumps(obj).encode()  # stdlib: integers beyond 64 bits too (orjson refuses them)


def check_decode(data: str | bytes) -> None:
    try:
        codec.decode(data)
    except codec.FrameError as err:
        assert err.code in (ErrorCode.BAD_FRAME, ErrorCode.INVALID)
        assert err.ref is None or len(err.ref) <= 64


@FUZZ
@given(st.binary(max_size=512))
def test_codec_on_arbitrary_bytes(data: bytes) -> None:
    check_decode(data)


@FUZZ
@given(st.text(max_size=512))
def test_codec_on_arbitrary_text(data: str) -> None:
    check_decode(data)


@FUZZ
@given(frame_like())
def test_codec_on_frame_like_objects(data: bytes) -> None:
    check_decode(data)
    check_decode(data.decode())


DOCUMENTED_CLOSES = {
    CloseCode.MESSAGE_TOO_BIG,
    CloseCode.UNAUTHORIZED,
    CloseCode.PROTOCOL_ERROR,
    CloseCode.RATE_LIMITED,
}


@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=300), st.text(max_size=300), frame_like()), max_size=30))
def test_session_answers_any_input_with_frames_or_a_documented_close(inputs: list[str | bytes]) -> None:
    limits = SessionLimits(max_frame_bytes=256, rate_per_s=5, rate_burst=5, rate_strikes=3, error_budget=4)
    session = ServerSession(limits, RetryingTracker(policies.fixed(0.5)), now=0.0)
    opened = False
    closes = []
    for i, data in enumerate(inputs):
        events = session.receive_data(data, now=i * 0.01)
        for ev in events:
            assert isinstance(ev, Handle | SendFrame | Close)
            if isinstance(ev, Close):
                closes.append(ev.code)
            if isinstance(ev, Handle) and ev.frame.type == "auth" and not opened:
                session.opened(token_deadline=1e9, now=i * 0.01)  # pretend the token was good
                opened = True
    assert len(closes) <= 1 and set(closes) <= DOCUMENTED_CLOSES


@FUZZ
@given(st.lists(st.binary(max_size=200), max_size=12))
def test_stomp_parser_on_arbitrary_chunks(chunks: list[bytes]) -> None:
    parser = StompParser(max_frame_bytes=1024)
    events: list[StompEvent] = []
    try:
        for chunk in chunks:
            events += parser.feed(chunk)
    except StompError:
        return


COMMANDS = [*sorted(CLIENT_COMMANDS), "FROB"]  # every real command, and one that is not


@st.composite
def stomp_like(draw: st.DrawFn) -> bytes:
    """Frames close to valid: a command, header lines with odd escapes and lengths, a body, NUL or not."""
    command = draw(st.sampled_from(COMMANDS)).encode()
    header_line = st.tuples(
        st.sampled_from(["destination", "content-length", "receipt", "id", "ack", "heart-beat", "x\\c"]),
        st.one_of(st.text(max_size=12), st.integers(-5, 5000).map(str)),
    )
    headers = draw(st.lists(header_line, max_size=5))
    body = draw(st.binary(max_size=64))
    eol = draw(st.sampled_from([b"\n", b"\r\n"]))
    raw = command + eol + b"".join(f"{k}:{v}".encode() + eol for k, v in headers) + eol + body
    return raw + (b"\0" if draw(st.booleans()) else b"")


@FUZZ
@given(st.lists(stomp_like(), max_size=5), st.integers(min_value=1, max_value=64))
def test_stomp_parser_on_near_valid_frames_split_anywhere(frames: list[bytes], cut: int) -> None:
    data = b"".join(frames)
    parser = StompParser(max_frame_bytes=2048)
    try:
        for start in range(0, len(data), cut):
            parser.feed(data[start : start + cut])
    except StompError:
        return
