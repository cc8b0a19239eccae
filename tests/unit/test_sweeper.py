"""The anti-entropy sweeper's decision (pure) and one sweep over fake links."""

from __future__ import annotations

from core.models import ConversationHead, Message, MessageKind
from core.sweeper import behind

NOW = 1_700_000_100_000


def head(conv: str, seq: int, ts_ms: int) -> ConversationHead:
    msg = Message(seq * 10, conv, seq, 1, "dev", f"c{seq}", MessageKind.TEXT, {"text": "x"}, ts_ms)
    return ConversationHead(conv, seq, msg)


def test_a_device_behind_an_old_enough_head_is_asked_to_sync() -> None:
    heads = {"d:1:2": head("d:1:2", 5, NOW - 5000)}
    assert behind({"d:1:2": 4}, heads, opened_ms=NOW - 60_000, now_ms=NOW, grace_ms=2000) == ["d:1:2"]


def test_a_device_that_holds_the_head_is_left_alone() -> None:
    heads = {"d:1:2": head("d:1:2", 5, NOW - 5000)}
    assert behind({"d:1:2": 5}, heads, opened_ms=NOW - 60_000, now_ms=NOW, grace_ms=2000) == []


def test_a_fresh_head_is_within_the_grace_its_fanout_may_be_on_the_way() -> None:
    heads = {"d:1:2": head("d:1:2", 5, NOW - 500)}
    assert behind({"d:1:2": 1}, heads, opened_ms=NOW - 60_000, now_ms=NOW, grace_ms=2000) == []


def test_an_unknown_conversation_is_judged_by_the_time_the_device_connected() -> None:
    old = {"g:7": head("g:7", 3, NOW - 30_000)}
    new = {"g:7": head("g:7", 3, NOW - 5_000)}
    opened = NOW - 10_000
    assert behind({}, old, opened_ms=opened, now_ms=NOW, grace_ms=2000) == []  # came with its first sync
    assert behind({}, new, opened_ms=opened, now_ms=NOW, grace_ms=2000) == ["g:7"]  # stored since: missing
