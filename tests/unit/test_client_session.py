"""The sans-I/O client session on fake time: frames and ``now`` in, frames and events out."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import core.sdk.session as cs
from core.sdk.backoff import full_jitter
from core.sdk.session import ClientSession, Released

CONV = "d:1:2"
ME, DEVICE = "1", "dev-a"


def auth_ok(ack: str = "three_state") -> dict[str, Any]:
    return {"type": "auth.ok", "ack": ack, "heartbeat_s": 30, "node": "n1", "token_expires": 0}


def push(seq: int, sender: str = "2", device: str = "dev-b") -> dict[str, Any]:
    msg = {"id": f"m{seq}", "conv": CONV, "seq": seq, "from": sender, "device": device, "cmid": f"c{seq}"}
    return {"type": "message.new", "msg": {**msg, "kind": "text", "body": {"text": str(seq)}}}


def batch(msgs: list[dict[str, Any]], last_seq: int = 0, more: bool = False) -> dict[str, Any]:
    return {"type": "sync.batch", "conv": CONV, "messages": msgs, "last_seq": last_seq, "more": more}


def send_frame(cmid: str) -> dict[str, Any]:
    return {"type": "message.send", "cmid": cmid, "conv": CONV, "kind": "text", "text": "hi"}


def online(s: ClientSession[str], now: float = 0.0, cursor: int = 0, ack: str = "three_state") -> None:
    """Connect, authenticate and finish the first sync with the conversation at ``cursor``."""
    s.connection_opened()
    s.receive(auth_ok(ack), now)
    s.receive(batch([], last_seq=cursor), now)
    s.receive({"type": "sync.done", "more": False}, now)
    s.frames_to_send()
    s.events_received()


def released(events: list[cs.ClientEvent[str]]) -> list[int]:
    return [m["seq"] for e in events if isinstance(e, Released) for m in e.items if m is not None]


def new_session(**kw: Any) -> ClientSession[str]:
    return ClientSession(DEVICE, user_id=ME, token="tok", **kw)


def test_hello_then_sync_from_known_cursors_then_synced() -> None:
    s = new_session()
    s.connection_opened()
    assert s.frames_to_send() == [{"type": "auth", "token": "tok", "device": DEVICE}]
    s.receive(auth_ok(), 0.0)
    assert s.connected and not s.synced
    assert s.frames_to_send() == [{"type": "sync", "cursors": {}}]
    assert [type(e) for e in s.events_received()] == [cs.Connected]
    s.receive(batch([], last_seq=4, more=True), 0.0)
    s.receive({"type": "sync.done", "more": False}, 0.0)
    assert s.frames_to_send() == [{"type": "sync", "cursors": {CONV: 4}}]  # a batch said "more"
    assert not s.synced
    s.receive({"type": "sync.done", "more": False}, 0.0)
    assert s.synced and [type(e) for e in s.events_received()] == [cs.Synced]
    s.connection_lost()
    s.connection_opened()
    s.receive(auth_ok(), 1.0)
    assert s.frames_to_send()[-1] == {"type": "sync", "cursors": {CONV: 4}}


def test_send_waits_for_sync_and_is_written_again_after_a_reconnect() -> None:
    s = new_session()
    s.connection_opened()
    s.receive(auth_ok(), 0.0)
    s.frames_to_send()
    s.send("c1", send_frame("c1"), 0.0, "rec")
    assert s.frames_to_send() == []  # not synced yet
    s.receive({"type": "sync.done", "more": False}, 0.0)
    assert s.frames_to_send() == [send_frame("c1")]
    s.connection_lost()
    online(s, 1.0)
    assert s.outbox["c1"].attempts == 3 and s.resends == 2
    s.receive({"type": "message.sent", "cmid": "c1", "conv": CONV, "seq": 1, "id": "m1"}, 2.0)
    acked, own = s.events_received()
    assert isinstance(acked, cs.SendAcked) and acked.out.record == "rec" and not s.outbox
    assert own == Released(CONV, [None], "push")
    assert s.ordering.cursor(CONV) == 1 and not s.ack_due  # our own message: no ack owed


def test_pushes_are_released_in_order_once_and_acked_cumulatively() -> None:
    s = new_session()
    online(s)
    s.receive(push(2), 0.0)
    assert released(s.events_received()) == [] and not s.ack_due
    s.receive(push(1), 0.0)
    s.receive(push(3), 0.0)
    assert released(s.events_received()) == [1, 2, 3]
    assert s.ack_due
    s.flush_acks()
    assert s.frames_to_send() == [{"type": "message.ack", "conv": CONV, "seq": 3}]
    assert not s.ack_due
    s.flush_acks()
    assert s.frames_to_send() == []  # nothing moved
    s.receive(push(3), 0.0)  # pushed again: the server missed the ack
    (dup,) = s.events_received()
    assert dup == cs.DuplicateDropped(CONV, 3, "push")
    s.flush_acks()
    assert s.frames_to_send() == [{"type": "message.ack", "conv": CONV, "seq": 3}]


def test_no_acks_with_the_ack_policy_off_or_auto_ack_disabled() -> None:
    for s, ack in ((new_session(), "off"), (new_session(auto_ack=False), "three_state")):
        online(s, ack=ack)
        s.receive(push(1), 0.0)
        assert released(s.events_received()) == [1]
        assert not s.ack_due


def test_a_hole_is_synced_after_the_gap_timeout_and_filled() -> None:
    s = new_session(gap_timeout_s=1.0)
    online(s, cursor=5)
    s.receive(push(8), 10.0)
    assert s.next_deadline() == 11.0
    s.tick(10.9)
    assert s.frames_to_send() == []
    s.tick(11.0)
    assert s.frames_to_send() == [{"type": "sync", "cursors": {CONV: 5}}]
    assert s.gap_syncs == 1
    s.tick(11.5)
    assert s.frames_to_send() == []  # not asked again at once
    s.receive(batch([push(6)["msg"], push(7)["msg"]], last_seq=8), 11.6)
    s.receive({"type": "sync.done", "more": False}, 11.6)
    assert released(s.events_received()) == [6, 7, 8]
    assert s.next_deadline() is None


def test_unknown_conversation_is_synced_before_its_messages_show() -> None:
    s = new_session()
    online(s)
    other = push(3)
    other["msg"]["conv"] = "g:9"
    s.receive(other, 0.0)
    assert s.frames_to_send() == [{"type": "sync", "cursors": {}}]
    assert released(s.events_received()) == []
    s.receive(
        {"type": "sync.batch", "conv": "g:9", "messages": [other["msg"]], "last_seq": 3, "more": False}, 0.1
    )
    assert released(s.events_received()) == [3]


def test_own_messages_in_a_sync_batch_advance_the_cursor_without_showing() -> None:
    s = new_session()
    online(s)
    mine, theirs = push(1, ME, DEVICE)["msg"], push(2)["msg"]
    s.receive(batch([mine, theirs], last_seq=2), 0.0)
    (ev,) = s.events_received()
    assert isinstance(ev, Released) and ev.via == "sync" and ev.items == [None, theirs]
    assert s.ordering.cursor(CONV) == 2 and s.ack_due


def test_late_ack_resends_linearly_up_to_max_resends() -> None:
    s = new_session(ack_timeout_s=2.0, max_resends=2)
    online(s)
    s.send("c1", send_frame("c1"), 0.0, "rec")
    s.frames_to_send()
    assert s.next_deadline() == 2.0
    s.tick(2.0)
    assert s.frames_to_send() == []  # due strictly after the timeout
    s.tick(2.1)
    assert s.frames_to_send() == [send_frame("c1")]
    assert s.next_deadline() == 4.0
    s.tick(4.1)
    assert s.frames_to_send() == [send_frame("c1")]
    s.tick(100.0)
    assert s.frames_to_send() == []
    assert s.outbox["c1"].attempts == 3 and s.next_deadline() is None


def test_retryable_error_waits_retry_after_and_a_final_one_fails_the_send() -> None:
    s = new_session()
    online(s)
    s.send("c1", send_frame("c1"), 0.0, "one")
    s.send("c2", send_frame("c2"), 0.0, "two", twice=True)
    assert s.frames_to_send() == [send_frame("c1"), send_frame("c2"), send_frame("c2")]
    s.receive({"type": "error", "ref": "c1", "code": "rate_limited", "retry_after_ms": 300}, 1.0)
    s.receive({"type": "error", "ref": "c2", "code": "forbidden", "message": "no"}, 1.0)
    s.receive({"type": "error", "code": "invalid", "message": "?"}, 1.0)
    events = s.events_received()
    assert [(type(e), getattr(e, "about_send", None)) for e in events] == [
        (cs.ErrorReceived, True),
        (cs.ErrorReceived, True),
        (cs.SendFailed, None),
        (cs.ErrorReceived, False),
    ]
    assert isinstance(events[2], cs.SendFailed) and events[2].out.record == "two" and "c2" not in s.outbox
    assert s.next_deadline() == 1.3
    s.tick(1.2)
    assert s.frames_to_send() == []
    s.tick(1.3)
    assert s.frames_to_send() == [send_frame("c1")]


def test_ack_policy_off_writes_once_and_queues_while_offline() -> None:
    s = new_session()
    s.send("c0", send_frame("c0"), 0.0, "early")  # before auth.ok: the policy is not known yet
    online(s, ack="off")
    assert not s.outbox and s.in_flight == 0
    s.send("c1", send_frame("c1"), 0.0, "now")
    assert s.frames_to_send() == [send_frame("c1")]
    assert [type(e) for e in s.events_received()] == [cs.SendWritten]
    s.connection_lost()
    s.send("c2", send_frame("c2"), 1.0, "later")
    assert s.frames_to_send() == [] and s.in_flight == 1
    online(s, ack="off")
    assert s.in_flight == 0


def test_other_frames_go_to_the_application() -> None:
    s = new_session()
    online(s)
    receipt = {"type": "receipt", "conv": CONV, "user": "2", "read": 3}
    s.receive(receipt, 0.0)
    assert s.events_received() == [cs.FrameReceived(receipt)]
    s.receive({"type": "sync.required"}, 0.0)
    assert s.frames_to_send() == [{"type": "sync", "cursors": {CONV: 0}}]


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 30),
    order=st.randoms(use_true_random=False),
    lost=st.sets(st.integers(1, 30)),
    dup=st.sets(st.integers(1, 30)),
)
def test_any_arrival_order_with_losses_and_duplicates_shows_each_message_once_in_order(
    n: int, order: Any, lost: set[int], dup: set[int]
) -> None:
    """Whatever the network does to the pushes, the gap repair fills every hole from the store (the truth)."""
    s = new_session(gap_timeout_s=1.0)
    online(s)
    arrivals = [q for q in range(1, n + 1) if q not in lost] + [q for q in dup if q <= n]
    order.shuffle(arrivals)
    shown: list[int] = []
    now = 0.0
    for q in arrivals:
        now += 0.1
        s.receive(push(q), now)
        shown += released(s.events_received())
        s.tick(now)
        for frame in s.frames_to_send():
            assert frame["type"] != "sync" or frame["cursors"].get(CONV, 0) == s.ordering.cursor(CONV)
    while len(shown) < n:  # the store answers every gap sync with what follows the cursor
        now += 1.0
        s.tick(now)
        for frame in s.frames_to_send():
            if frame["type"] == "sync":
                after = frame["cursors"][CONV]
                s.receive(batch([push(q)["msg"] for q in range(after + 1, n + 1)], last_seq=n), now)
        shown += released(s.events_received())
        if s.next_deadline() is None and len(shown) < n:  # the last messages were lost: nothing buffered
            s.receive({"type": "sync.required"}, now)
            s.frames_to_send()
            s.receive(batch([push(q)["msg"] for q in range(len(shown) + 1, n + 1)], last_seq=n), now)
            shown += released(s.events_received())
    assert shown == list(range(1, n + 1))


def test_full_jitter_is_uniform_below_the_capped_exponential() -> None:
    assert full_jitter(0, 0.5, 30.0, lambda: 0.999) < 0.5
    assert full_jitter(3, 0.5, 30.0, lambda: 0.5) == 2.0
    assert full_jitter(10, 0.5, 30.0, lambda: 0.5) == 15.0  # capped
    assert full_jitter(10_000, 0.5, 30.0, lambda: 1.0) == 30.0  # no overflow
    assert full_jitter(5, 0.5, 30.0, lambda: 0.0) == 0.0


async def test_the_sdk_device_name_set_after_construction_goes_into_the_auth_frame() -> None:
    """The fault campaign logs one device in on two nodes by renaming the second client's device: the name must
    reach the session's ``auth`` frame, or the server sees two devices and stores the race's message twice."""
    from core.sdk.client import WsimClient

    sdk = WsimClient("http://127.0.0.1:1", device="first")
    try:
        sdk.device = "twin"
        sdk.session.token = "t"
        sdk.session.connection_opened()
        auth = [f for f in sdk.session.frames_to_send() if f["type"] == "auth"]
        assert auth == [{"type": "auth", "token": "t", "device": "twin"}]
    finally:
        await sdk.http.aclose()
