"""The core benchmark runs end to end at a tiny scale (a smoke test of the script, not a measurement)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments import bench_core


@pytest.mark.slow
def test_bench_core_tiny_scale(tmp_path: Path) -> None:
    args = [
        "--connections", "60", "--workers", "2", "--pair-users", "20", "--group-size", "20", "--group-senders", "2",
        "--duration-s", "2", "--hold-s", "0.5", "--repeats", "2", "--open-rates", "40", "--out", str(tmp_path),
    ]  # fmt: skip
    assert bench_core.main(args) == 0
    (run,) = (tmp_path / "bench_core").iterdir()
    result = json.loads((run / "result.json").read_text())
    idle, one, fan = result["idle"], result["one_to_one"], result["fanout"]
    assert idle["connected"] == 60 and idle["still_connected_after_hold"] == 60
    assert idle["server_gauge_connections"] == 60
    assert one["acked"] > 0 and one["delivered"] >= one["acked"] * 0.9
    assert one["send_ack_ms"]["p50"] > 0 and one["server"]["messages_stored"] >= one["acked"]
    assert fan["delivered"] > fan["acked"]  # each group message reaches the other members
    assert "| idle connections held by one process | 60 of 60 |" in (run / "report.md").read_text()
    assert one["repeats"] == 2 and len(one["runs"]) == 2
    (open_loop,) = result["open_loop"]  # 40 msgs/s offered by 20 users: about 80 in 2 s, every one delivered
    assert open_loop["offered_per_s"] == 40 and 20 <= open_loop["acked"] <= 200
    assert open_loop["delivered"] >= open_loop["acked"] and open_loop["send_deliver_ms"]["p99"] is not None
    assert "push latency at 40 msgs/s offered" in (run / "report.md").read_text()
    lo, hi = one["acked_per_s_range"]
    assert lo <= one["acked_per_s"] <= hi


def test_median_of_nested_phase_results() -> None:
    runs = [
        {"rate": 10.0, "lat": {"p50": 1.0, "p99": None}, "ok": True},
        {"rate": 30.0, "lat": {"p50": 3.0, "p99": 9.0}, "ok": True},
        {"rate": 20.0, "lat": {"p50": 2.0, "p99": 7.0}, "ok": False},
    ]
    assert bench_core.median_of(runs) == {"rate": 20.0, "lat": {"p50": 2.0, "p99": 8.0}, "ok": True}
