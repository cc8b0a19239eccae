"""The test-only crash points: parsing, counting to the n-th pass, the marker that proves the point was hit."""

from __future__ import annotations

from pathlib import Path

import pytest

from core import faultpoints
from core.clock import FakeClock
from core.faultpoints import NO_FAULTS, SkewedClock, faults_from_env, parse_crash_at
from core.routing import Track


def test_disabled_by_default() -> None:
    # The test process has no WSIM_FAULT_CRASH_AT: the hot path calls a no-op.
    assert faults_from_env(FakeClock()) is NO_FAULTS


def test_armed_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSIM_FAULT_CRASH_AT", "mid_fanout:2")
    monkeypatch.setenv("WSIM_FAULT_MARKER", str(tmp_path / "marker"))
    kills: list[int] = []
    monkeypatch.setattr(faultpoints, "_kill_self", lambda: kills.append(1))
    faults = faults_from_env(FakeClock())
    faults.reached("mid_fanout", Track(9, "g:7", 4), 11)
    faults.reached("mid_fanout", Track(9, "g:7", 4), 12)
    assert kills == [1]
    assert (tmp_path / "marker").read_text().split()[:5] == ["mid_fanout", "2", "g:7#4", "to", "12"]


def test_the_nth_pass_writes_the_marker_then_kills(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kills: list[int] = []
    monkeypatch.setattr(faultpoints, "_kill_self", lambda: kills.append(1))
    cp = parse_crash_at("after_store:3", str(tmp_path / "marker"), FakeClock())
    for i in range(5):
        cp.reached("before_store", f"x{i}")  # another point: not counted
        cp.reached("after_store", Track(100 + i, "d:1:2", i))
    assert kills == [1]
    line = (tmp_path / "marker").read_text().split()
    assert line[:3] == ["after_store", "3", "d:1:2#2"]


@pytest.mark.parametrize("bad", ["nowhere:1", "after_store:0"])
def test_bad_settings_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="WSIM_FAULT_CRASH_AT"):
        parse_crash_at(bad, None, FakeClock())


def test_after_ack_kills_after_a_grace_on_the_node_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ack is queued when the point is reached: the kill waits ``ACK_GRACE_S`` so the writer can send it."""
    kills: list[int] = []
    monkeypatch.setattr(faultpoints, "_kill_self", lambda: kills.append(1))
    clock = FakeClock()
    cp = parse_crash_at("after_ack:1", str(tmp_path / "marker"), clock)
    cp.reached("after_ack", Track(1, "d:1:2", 1))
    assert (tmp_path / "marker").exists() and kills == []
    clock.advance(faultpoints.ACK_GRACE_S / 2)
    assert kills == []
    clock.advance(faultpoints.ACK_GRACE_S / 2)
    assert kills == [1]


def test_skewed_clock_steps_back_once(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = SkewedClock(skew_ms=-3000, back_ms=2000, back_after_s=3600)
    assert abs(clock.wall_ms() - (faultpoints.SystemClock().wall_ms() - 3000)) < 200
    stepped = SkewedClock(skew_ms=0, back_ms=2000, back_after_s=0)
    assert abs(stepped.wall_ms() - (faultpoints.SystemClock().wall_ms() - 2000)) < 200
