"""The transport registry and setting: every registered kind imports, the default is the native WebSocket, and a
kind may appear once."""

from __future__ import annotations

import pytest

from core.config import ConfigError, load_settings
from strategies import transport
from strategies._registry import StrategyUnavailableError
from strategies.ack.tracking import NullTracker, RetryingTracker
from tests.support import policies
from tests.support.services import unavailable


def test_every_transport_kind_imports() -> None:
    assert transport.REGISTRY.names() == ["long_poll", "mqtt", "short_poll", "stomp", "websocket"]
    missing = []
    for name in transport.REGISTRY.names():
        try:
            assert isinstance(transport.REGISTRY.load(name), type)
        except StrategyUnavailableError as exc:
            missing.append(str(exc))
    if missing:  # aiomqtt not installed: CI installs every extra, so there it fails
        unavailable("; ".join(missing))


def test_default_is_the_native_websocket_alone() -> None:
    assert [t.kind for t in load_settings().strategies.transports] == ["websocket"]


def test_transport_list_is_validated() -> None:
    s = load_settings(
        None, {"strategies": {"transports": [{"kind": "stomp"}, {"kind": "long_poll", "hold_s": 5}]}}
    )
    assert [t.kind for t in s.strategies.transports] == ["stomp", "long_poll"]
    with pytest.raises(ConfigError, match="repeated: stomp"):
        load_settings(None, {"strategies": {"transports": [{"kind": "stomp"}, {"kind": "stomp"}]}})
    with pytest.raises(ConfigError, match=r"strategies\.transports\.0"):
        load_settings(None, {"strategies": {"transports": [{"kind": "carrier_pigeon"}]}})


def test_tracker_settle_removes_exactly_one_pending_delivery() -> None:
    t = RetryingTracker(policies.exponential())
    for seq in (1, 2, 3):
        t.track(seq, "d:1:2", seq, f"f{seq}", now=0.0)
    assert t.settle("d:1:2", 2) and not t.settle("d:1:2", 2)
    assert t.pending_count() == 2
    due = t.due(now=100.0)
    assert sorted(e.pending.seq for e in due) == [1, 3]  # 2 is never resent
    assert not NullTracker().settle("d:1:2", 1)
