from __future__ import annotations

import orjson

from core.errors import CloseCode
from core.protocol.frames import Auth, ErrorFrame, MessageAck, MessageSend
from core.protocol.session import (
    Close,
    DeadLettered,
    Handle,
    Phase,
    Redeliver,
    SendFrame,
    ServerSession,
    SessionLimits,
)
from strategies.ack.tracking import NullTracker, RetryingTracker
from tests.support import policies

AUTH = orjson.dumps({"type": "auth", "token": "t"}).decode()


def send_frame(cmid: str = "c1") -> str:
    return orjson.dumps({"type": "message.send", "cmid": cmid, "conv": "d:1:2", "text": "hi"}).decode()


def opened(limits: SessionLimits | None = None, tracker: object | None = None) -> ServerSession:
    s = ServerSession(limits or SessionLimits(), tracker or NullTracker(), now=0.0)  # type: ignore[arg-type]
    [ev] = s.receive_data(AUTH, 0.0)
    assert isinstance(ev, Handle) and isinstance(ev.frame, Auth)
    s.opened(token_deadline=900.0, now=0.0)
    return s


def closes(events: list[object]) -> list[CloseCode]:
    return [e.code for e in events if isinstance(e, Close)]


def test_first_frame_must_be_auth() -> None:
    s = ServerSession(SessionLimits(), NullTracker(), now=0.0)
    assert closes(s.receive_data(send_frame(), 0.1)) == [CloseCode.UNAUTHORIZED]
    assert s.phase is Phase.CLOSED
    assert s.receive_data(AUTH, 0.2) == []


def test_malformed_first_frame_closes_unauthorized_with_error() -> None:
    s = ServerSession(SessionLimits(), NullTracker(), now=0.0)
    events = s.receive_data("not json", 0.0)
    assert isinstance(events[0], SendFrame) and isinstance(events[0].frame, ErrorFrame)
    assert closes(events) == [CloseCode.UNAUTHORIZED]


def test_auth_timeout() -> None:
    s = ServerSession(SessionLimits(auth_timeout_s=5), NullTracker(), now=0.0)
    assert s.next_deadline() == 5.0
    assert s.tick(4.9) == []
    assert closes(s.tick(5.0)) == [CloseCode.UNAUTHORIZED]


def test_auth_timeout_stops_once_the_auth_frame_arrived() -> None:
    """A busy node verifying the token late must not close the client as unauthorized (it would stop retrying)."""
    s = ServerSession(SessionLimits(auth_timeout_s=5), NullTracker(), now=0.0)
    [ev] = s.receive_data(AUTH, 4.0)
    assert isinstance(ev, Handle)
    assert s.next_deadline() is None
    assert s.tick(60.0) == [] and s.phase is Phase.AWAIT_AUTH
    s.opened(token_deadline=900.0, now=61.0)
    assert s.phase is Phase.OPEN


def test_heartbeat_reaping_after_missed_beats() -> None:
    s = opened(SessionLimits(heartbeat_interval_s=30, missed_heartbeats=2))
    assert s.next_deadline() == 60.0
    s.receive_data('{"type":"ping"}', 50.0)  # any frame counts as liveness
    assert s.tick(60.0) == []
    assert s.next_deadline() == 110.0
    assert closes(s.tick(110.0)) == [CloseCode.HEARTBEAT_TIMEOUT]


def test_token_expiry_on_open_socket_and_renewal() -> None:
    s = opened(SessionLimits(heartbeat_interval_s=1000))
    assert s.next_deadline() == 900.0
    s.renewed(1800.0)
    assert s.tick(900.0) == []
    assert closes(s.tick(1800.0)) == [CloseCode.TOKEN_EXPIRED]


def test_second_auth_is_an_error_not_a_close() -> None:
    s = opened()
    events = s.receive_data(AUTH, 1.0)
    assert len(events) == 1 and isinstance(events[0], SendFrame)
    assert s.phase is Phase.OPEN


def test_rate_limit_rejects_then_closes() -> None:
    s = opened(SessionLimits(rate_per_s=1, rate_burst=2, rate_strikes=3))
    handled = [isinstance(e, Handle) for e in s.receive_data(send_frame("a"), 1.0)]
    handled += [isinstance(e, Handle) for e in s.receive_data(send_frame("b"), 1.0)]
    assert handled == [True, True]
    events = s.receive_data(send_frame("c"), 1.0)
    err = events[0]
    assert isinstance(err, SendFrame) and isinstance(err.frame, ErrorFrame)
    assert err.frame.code == "rate_limited" and err.frame.ref == "c" and (err.frame.retry_after_ms or 0) > 0
    all_events = []
    for i in range(5):
        all_events += s.receive_data(send_frame(f"x{i}"), 1.0)
    assert closes(all_events) == [CloseCode.RATE_LIMITED]


def test_acks_and_pings_are_not_rate_limited() -> None:
    s = opened(SessionLimits(rate_per_s=0.001, rate_burst=1))
    for i in range(50):
        [ev] = s.receive_data(orjson.dumps({"type": "message.ack", "conv": "d:1:2", "seq": i}).decode(), 1.0)
        assert isinstance(ev, Handle) and isinstance(ev.frame, MessageAck)


def test_error_budget_closes_with_protocol_error() -> None:
    s = opened(SessionLimits(error_budget=3))
    events: list[object] = []
    for _ in range(4):
        events += s.receive_data('{"type":"bogus"}', 1.0)
    errors = [e for e in events if isinstance(e, SendFrame)]
    assert len(errors) == 4 and all(isinstance(e.frame, ErrorFrame) for e in errors)
    assert closes(events) == [CloseCode.PROTOCOL_ERROR]


def test_oversized_frame_closes_1009() -> None:
    s = opened(SessionLimits(max_frame_bytes=1024))
    big = orjson.dumps({"type": "message.send", "cmid": "x", "conv": "d:1:2", "text": "a" * 2000}).decode()
    assert closes(s.receive_data(big, 1.0)) == [CloseCode.MESSAGE_TOO_BIG]


def test_valid_send_is_handed_to_driver() -> None:
    s = opened()
    [ev] = s.receive_data(send_frame(), 1.0)
    assert isinstance(ev, Handle) and isinstance(ev.frame, MessageSend) and ev.frame.text == "hi"


def test_delivery_tracking_redelivers_then_dead_letters_and_ack_stops_it() -> None:
    s = opened(SessionLimits(heartbeat_interval_s=1000), RetryingTracker(policies.exponential(retries=1)))
    s.renewed(10_000.0)
    s.delivered(7, "d:1:2", 3, "F", now=0.0)
    s.delivered(8, "d:1:2", 4, "G", now=0.0)
    assert s.next_deadline() == 1.0
    evs = s.tick(1.0)
    assert [type(e) for e in evs] == [Redeliver, Redeliver]
    s.receive_data(orjson.dumps({"type": "message.ack", "conv": "d:1:2", "seq": 3}).decode(), 1.5)
    evs = s.tick(3.0)
    assert [type(e) for e in evs] == [DeadLettered]
    assert evs[0].pending.msg_id == 8  # type: ignore[union-attr]


def test_external_close_is_final() -> None:
    s = opened()
    assert closes(s.close(CloseCode.SESSION_REVOKED, "logout")) == [CloseCode.SESSION_REVOKED]
    assert s.close(CloseCode.NORMAL, "again") == []
    assert s.tick(1e9) == [] and s.next_deadline() is None


def _refusal(events: list[object]) -> ErrorFrame | None:
    for e in events:
        if isinstance(e, SendFrame) and isinstance(e.frame, ErrorFrame) and e.frame.code == "rate_limited":
            return e.frame
    return None


def test_a_client_that_waits_retry_after_is_never_closed() -> None:
    """Issue 14 M4: a backlog flushed at once, then every refused frame resent after its retry_after_ms, as the
    docs say, must get through without 4029 (strikes used to pile up on every refusal and never reset)."""
    s = opened(SessionLimits(rate_per_s=20, rate_burst=40, rate_strikes=20))
    now = 1.0
    backlog = [f"b{i}" for i in range(40 + 40)]  # burst + as many again, all in flight at once
    waiting: list[tuple[float, str]] = []
    for cmid in backlog:
        events = s.receive_data(send_frame(cmid), now)
        assert not closes(events)
        if (err := _refusal(events)) is not None:
            waiting.append((now + (err.retry_after_ms or 0) / 1000, cmid))
    assert len(waiting) == 40
    delivered = 40
    while waiting:  # resend each refused frame once its retry_after_ms has passed, one at a time
        waiting.sort()
        at, cmid = waiting.pop(0)
        now = max(now, at)
        events = s.receive_data(send_frame(cmid), now)
        assert not closes(events), f"closed after {delivered} accepted"
        if (err := _refusal(events)) is not None:
            waiting.append((now + (err.retry_after_ms or 0) / 1000, cmid))
        else:
            delivered += 1
    assert delivered == 80 and s.phase is Phase.OPEN


def test_a_client_that_ignores_retry_after_is_still_closed() -> None:
    s = opened(SessionLimits(rate_per_s=20, rate_burst=40, rate_strikes=20))
    events: list[object] = []
    now = 1.0
    for i in range(2000):  # 1000 frames/s, never waiting
        now += 0.001
        events += s.receive_data(send_frame(f"f{i}"), now)
        if closes(events):
            break
    assert closes(events) == [CloseCode.RATE_LIMITED]


def test_one_cumulative_ack_settles_every_pending_delivery_up_to_it() -> None:
    """Issue 11: a device acks once per batch; an ack up to N clears every pending delivery <= N of that
    conversation on that device (no retry of any), and nothing of another conversation or above N."""
    tracker = RetryingTracker(policies.exponential(retries=3))
    s = opened(SessionLimits(heartbeat_interval_s=1000), tracker)
    for seq in range(1, 6):
        s.delivered(100 + seq, "d:1:2", seq, f"m{seq}", 0.0)
    s.delivered(200, "g:9", 1, "g1", 0.0)
    s.receive_data(orjson.dumps({"type": "message.ack", "conv": "d:1:2", "seq": 4}).decode(), 0.5)
    assert tracker.pending_count() == 2
    redelivered = [e.pending for e in s.tick(1.0) if isinstance(e, Redeliver)]
    assert sorted((p.conv, p.seq) for p in redelivered) == [("d:1:2", 5), ("g:9", 1)]
