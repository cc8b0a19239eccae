from __future__ import annotations

import pytest

from core.errors import ErrorCode
from core.protocol import codec
from core.protocol.frames import MessageSend, Sync


@pytest.mark.parametrize(
    ("raw", "code", "ref"),
    [
        ("nope", ErrorCode.BAD_FRAME, None),
        ("[1,2]", ErrorCode.BAD_FRAME, None),
        ('{"x":1}', ErrorCode.BAD_FRAME, None),
        ('{"type":"fly"}', ErrorCode.BAD_FRAME, "fly"),
        ('{"type":"message.send","cmid":"a1","conv":"x:1"}', ErrorCode.INVALID, "a1"),
        ('{"type":"message.send","cmid":"a b","conv":"d:1:2"}', ErrorCode.INVALID, "a b"),
        ('{"type":"message.ack","conv":"g:1","seq":-1}', ErrorCode.INVALID, "message.ack"),
        ('{"type":"ping","extra":true}', ErrorCode.INVALID, "ping"),
    ],
)
def test_decode_errors_have_stable_codes(raw: str, code: ErrorCode, ref: str | None) -> None:
    with pytest.raises(codec.FrameError) as info:
        codec.decode(raw)
    assert info.value.code is code
    assert info.value.ref == ref


def test_decode_valid_frames() -> None:
    f = codec.decode('{"type":"message.send","cmid":"c-1","conv":"g:42","kind":"text","text":"hi"}')
    assert isinstance(f, MessageSend) and f.conv == "g:42"
    s = codec.decode(b'{"type":"sync","cursors":{"d:1:2":5}}')
    assert isinstance(s, Sync) and s.cursors == {"d:1:2": 5} and s.limit == 200


def test_encode_uses_wire_names() -> None:
    from core.protocol.frames import ErrorFrame

    assert codec.encode(ErrorFrame(code="x", message="m")) == '{"type":"error","code":"x","message":"m"}'


def test_fast_encoder_matches_pydantic_serialization_for_every_server_frame() -> None:
    import orjson

    from core.protocol import frames as f

    samples = [
        f.AuthOk(
            user="1", device="d", node="n", heartbeat_s=30.0, ack="three_state", server_ts=5, token_expires=9
        ),
        f.Pong(ts=None, server_ts=7),
        f.MessageSent(cmid="c", id="9", conv="d:1:2", seq=3, ts=4),
        f.MessageSent.model_construct(cmid="c", id="9", conv="d:1:2", seq=3, ts=4, duplicate=True),
        f.MessageNew(msg={"id": "9", "body": {"text": "你好"}, "recalled": False}),
        f.Receipt(conv="g:1", user="2", read=5),
        f.Receipt.model_construct(conv="g:1", user="2", delivered=5),
        f.SyncBatch(conv="g:1", messages=[{"seq": 1}], last_seq=1, more=False),
        f.SyncDone(more=True),
        f.PresenceFrame(user="1", online=True, devices=2),
        f.TypingEvent(conv="g:1", user="1"),
        f.Notify(event="friend.request", data={"id": "1"}),
        f.SyncRequired(reason="bus gap"),
        f.ErrorFrame(code="invalid", message="m", ref="c1", retry_after_ms=None),
    ]
    for frame in samples:
        expected = orjson.dumps(frame.model_dump(mode="json", by_alias=True, exclude_none=True)).decode()
        assert codec.encode(frame) == expected, type(frame).__name__
    # every server frame type is covered by a sample
    assert {type(s).__name__ for s in samples} >= {t.__name__ for t in f.ServerFrame.__args__}  # type: ignore[attr-defined]


def test_hot_frame_builders_match_their_models() -> None:
    from core.protocol import frames as f

    assert codec.message_sent_json("c1", 77, "d:1:2", 5, 1000, False) == codec.encode(
        f.MessageSent(cmid="c1", id="77", conv="d:1:2", seq=5, ts=1000, duplicate=False)
    )
    assert codec.message_sent_json("c1", 77, "d:1:2", 5, 1000, True) == codec.encode(
        f.MessageSent(cmid="c1", id="77", conv="d:1:2", seq=5, ts=1000, duplicate=True)
    )
    msg = {"id": "9", "conv": "g:3", "seq": 1, "body": {"text": "hi"}}
    assert codec.message_new_json(msg) == codec.encode(f.MessageNew(msg=msg))
    assert codec.receipt_json("d:1:2", 2, delivered=4) == codec.encode(
        f.Receipt(conv="d:1:2", user="2", delivered=4)
    )
    assert codec.receipt_json("g:3", 2, read=8) == codec.encode(f.Receipt(conv="g:3", user="2", read=8))
