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
