"""The sans-I/O framing every network bus shares: sequence numbers, duplicates, gaps, gap notices."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies.bus.config import MqttBusConfig, RedisBusConfig
from strategies.bus.endpoint import (
    BROADCAST,
    BadFrameError,
    BusFrame,
    ForgedFrameError,
    FrameKind,
    GapDetector,
    Sequencer,
    decode_frame,
    encode_frame,
    frame_key,
)
from strategies.bus.framed import cluster_key

KEY = frame_key(b"k" * 32, "wsim")


def test_frames_round_trip_with_any_payload() -> None:
    frame = BusFrame(FrameKind.DATA, "node-1#ab12", "node-2", 42, b'{"k":"d"}\n\x00raw|bytes')
    assert decode_frame(encode_frame(frame, KEY), KEY) == frame
    gap = BusFrame(FrameKind.GAP, "node-1#ab12", BROADCAST, 7)
    assert decode_frame(encode_frame(gap, KEY), KEY) == gap


@pytest.mark.parametrize("data", [b"", b"no header", b"v1|d|a|b|1\nx", b"v2|z|a|b|1\nx", b"v2|d|a|b|x\n"])
def test_foreign_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(BadFrameError):
        decode_frame(data, KEY)


def test_forged_edited_and_foreign_cluster_frames_are_refused() -> None:
    """H4: without the cluster key no frame is accepted, and no genuine frame survives an edit."""
    frame = encode_frame(BusFrame(FrameKind.DATA, "node-1#ab12", "node-2", 3, b'{"seq":3}'), KEY)
    edited = frame.replace(b'{"seq":3}', b'{"seq":4}')
    renumbered = frame.replace(b"|3|", b"|9|", 1)
    other_prefix = encode_frame(
        BusFrame(FrameKind.DATA, "n#1", "node-2", 1, b"x"), frame_key(b"k" * 32, "other")
    )
    unsigned_v1 = b"v1|d|node-1#ab12|node-2|3\n{}"
    for data in (edited, renumbered, other_prefix):
        with pytest.raises(ForgedFrameError):
            decode_frame(data, KEY)
    with pytest.raises(BadFrameError):
        decode_frame(unsigned_v1, KEY)


def test_sequencer_numbers_each_stream_on_its_own() -> None:
    s = Sequencer("p#1")
    assert [s.data("a", b"").seq, s.data("a", b"").seq, s.data("b", b"").seq, s.data("a", b"").seq] == [
        1,
        2,
        1,
        3,
    ]


def test_failed_frames_are_owed_one_gap_notice_per_stream() -> None:
    s = Sequencer("p#1")
    f1, f2, f3 = s.data("a", b""), s.data("a", b""), s.data("b", b"")
    s.failed([f1, f2, f3])
    owed = {f.stream: f for f in s.owed()}
    assert {k: (f.kind, f.seq) for k, f in owed.items()} == {"a": (FrameKind.GAP, 2), "b": (FrameKind.GAP, 1)}
    s.gap_sent(owed["a"])
    assert [f.stream for f in s.owed()] == ["b"]
    # A newer failure on a stream whose older notice is in flight keeps the stream owed.
    f4 = s.data("b", b"")
    s.failed([f4])
    s.gap_sent(owed["b"])
    assert [(f.stream, f.seq) for f in s.owed()] == [("b", 2)]


def frame(seq: int, pub: str = "p#1", stream: str = "me", kind: FrameKind = FrameKind.DATA) -> BusFrame:
    return BusFrame(kind, pub, stream, seq, b"x")


def test_first_frame_sets_the_baseline_then_jumps_are_gaps_and_late_frames_still_delivered() -> None:
    d = GapDetector("me#0")
    assert d.receive(frame(10)).deliver  # the baseline
    assert d.receive(frame(10)).duplicate
    r = d.receive(frame(13))
    assert r.deliver and r.gap is not None and "13 after 10" in r.gap
    late = d.receive(frame(11))
    assert late.deliver and late.gap is None and not late.duplicate
    again = d.receive(frame(11))
    assert not again.deliver and again.duplicate
    assert d.receive(frame(12)).deliver
    assert d.receive(frame(14)).deliver


def test_streams_and_publishers_are_independent_and_own_frames_ignored() -> None:
    d = GapDetector("me#0")
    d.receive(frame(5, "a#1"))
    d.receive(frame(1, "a#1", BROADCAST))
    assert d.receive(frame(6, "a#1")).gap is None
    assert d.receive(frame(2, "a#1", BROADCAST)).gap is None
    assert d.receive(frame(1, "b#1")).gap is None  # a new publisher: baseline
    assert d.receive(frame(1, "a#2")).gap is None  # a restarted publisher is a new incarnation
    assert not d.receive(frame(1, "me#0", BROADCAST)).deliver


def test_gap_notice_always_reports_and_advances_the_baseline() -> None:
    d = GapDetector("me#0")
    r = d.receive(frame(3, kind=FrameKind.GAP))
    assert r.gap is not None and not r.deliver  # even from a publisher never seen before
    d.receive(frame(4))
    assert d.receive(frame(5, kind=FrameKind.GAP)).gap is not None
    assert d.receive(frame(6)).gap is None  # the notice covered everything up to 5


def test_reset_forgets_baselines() -> None:
    d = GapDetector("me#0")
    d.receive(frame(1))
    d.reset()
    assert d.receive(frame(9)).gap is None


def test_a_reordering_at_the_baseline_still_delivers_once() -> None:
    d = GapDetector("me#0")
    assert d.receive(frame(7)).deliver
    assert d.receive(frame(6)).deliver
    assert d.receive(frame(6)).duplicate


def test_missing_and_stream_memory_is_bounded() -> None:
    d = GapDetector("me#0", max_missing=4, max_streams=2)
    d.receive(frame(1))
    d.receive(frame(100))
    assert not d.receive(frame(50)).deliver  # older than the remembered holes: dropped (a resync covers it)
    assert d.receive(frame(99)).deliver
    d.receive(frame(1, "b#1"))
    d.receive(frame(1, "c#1"))  # evicts the oldest stream
    assert d.receive(frame(500)).gap is None  # p#1 forgotten: a new baseline


@given(st.data())
def test_any_loss_or_reordering_delivers_each_frame_at_most_once_and_reports_every_loss(
    data: st.DataObject,
) -> None:
    """Model a broker that drops, duplicates and swaps adjacent frames of one stream."""
    n = data.draw(st.integers(min_value=1, max_value=60))
    sent = list(range(1, n + 1))
    arrivals: list[int] = []
    for seq in sent:
        action = data.draw(st.sampled_from(["ok", "ok", "drop", "dup"]))
        if action == "ok":
            arrivals.append(seq)
        elif action == "dup":
            arrivals += [seq, seq]
    if len(arrivals) > 1 and data.draw(st.booleans()):
        i = data.draw(st.integers(min_value=0, max_value=len(arrivals) - 2))
        arrivals[i], arrivals[i + 1] = arrivals[i + 1], arrivals[i]
    d = GapDetector("me#0")
    delivered: list[int] = []
    gaps = 0
    for seq in arrivals:
        r = d.receive(frame(seq))
        if r.deliver:
            delivered.append(seq)
        gaps += r.gap is not None
    assert len(delivered) == len(set(delivered))  # at most once
    assert set(delivered) == set(arrivals)  # nothing that arrived is dropped (holes are remembered)
    if arrivals:
        first = arrivals[0]
        lost = set(range(first, max(arrivals) + 1)) - set(arrivals)
        if lost:
            assert gaps >= 1  # a loss after the baseline is never silent


def test_cluster_key_is_masked_for_people_and_kept_for_nodes(tmp_path: Path) -> None:
    cfg = RedisBusConfig(cluster_key="k" * 32)
    assert cfg.model_dump(mode="json")["cluster_key"] == "k" * 32  # what wsim cluster hands its nodes
    assert cfg.model_dump(mode="json", context={"mask_secrets": True})["cluster_key"] == "**********"
    assert "k" * 32 not in repr(cfg)
    assert cluster_key(cfg, tmp_path) == b"k" * 32


def test_without_a_configured_key_nodes_sharing_a_data_dir_share_a_generated_one(tmp_path: Path) -> None:
    key = cluster_key(RedisBusConfig(), tmp_path)
    assert len(key) == 64 and cluster_key(MqttBusConfig(), tmp_path) == key
    assert (tmp_path / "bus.key").stat().st_mode & 0o777 == 0o600
    assert cluster_key(RedisBusConfig(), tmp_path / "elsewhere") != key
