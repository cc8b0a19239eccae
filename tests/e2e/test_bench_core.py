"""The core benchmark runs end to end at a tiny scale (a smoke test of the script, not a measurement)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from experiments import bench_core
from experiments.analysis import prom

# result.json's headline figures (docs/performance.md, "Method"): each must be a number.
HEADLINE = {
    "ceiling": ("echo_msgs_per_s", "echo_cpu_us_per_msg", "broadcast_cpu_us_per_delivery"),
    "one_to_one": (
        "msgs_per_s", "server_cpu_us_per_msg", "redeliveries_per_msg", "send_deliver_p50_ms", "send_deliver_p99_ms",
    ),
    "fanout": ("deliveries_per_s", "server_cpu_us_per_delivery"),
    "gc": ("max_pause_ms", "pauses_over_20ms"),
    "ratios": ("cpu_per_msg_vs_echo", "cpu_per_delivery_vs_broadcast"),
}  # fmt: skip
OPEN_LOOP = ("rate", "connections", "send_deliver_p50_ms", "send_deliver_p99_ms", "send_deliver_p999_ms")


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@pytest.mark.slow
def test_bench_core_tiny_scale(tmp_path: Path) -> None:
    args = [
        "--connections", "60", "--workers", "2", "--pair-users", "20", "--group-size", "20", "--group-senders", "2",
        "--duration-s", "2", "--hold-s", "0.5", "--repeat", "2", "--open-rates", "40", "--drain-quiet-s", "0.5",
        "--hold-connections", "80", "--hold-phase-s", "1", "--out", str(tmp_path),
    ]  # fmt: skip
    assert bench_core.main(args) == 0
    (run,) = (tmp_path / "bench_core").iterdir()
    result = json.loads((run / "result.json").read_text())
    for section, keys in HEADLINE.items():
        assert set(result[section]) == set(keys), section
        assert all(_is_number(result[section][k]) for k in keys), result[section]
        if section != "gc":
            assert len(result["repetitions"][section]) == 2  # every round kept beside the median
    (row,) = result["open_loop"]
    assert set(row) == set(OPEN_LOOP) and all(_is_number(row[k]) for k in OPEN_LOOP)
    assert row["rate"] == 40 and row["connections"] == 60
    assert result["ceiling"]["echo_msgs_per_s"] > 0 and result["one_to_one"]["msgs_per_s"] > 0
    # the last phase connects the 20 users left out so far and holds all 80 (the phases before never saw them)
    hold = result["hold"]
    assert hold["connected"] == hold["still_connected_after_hold"] == hold["server_gauge_connections"] == 80
    assert hold["bytes_per_connection"] > 0 and hold["error"] is None
    assert (run / "server.log").is_file()  # kept for a failed phase's explanation

    idle, details = result["idle"], result["details"]
    assert idle["connected"] == 60 and idle["still_connected_after_hold"] == 60
    assert idle["server_gauge_connections"] == 60
    for one in details["one_to_one"]:
        assert one["acked"] > 0 and one["delivered"] >= one["acked"] * 0.9
        assert one["send_ack_ms"]["p50"] > 0 and one["server"]["messages_stored"] >= one["acked"]
        assert one["server_cpu_s"] > 0
        by_thread = one["server_cpu_us_per_msg_by_thread"]  # the SQLite threads carry their names to the OS
        assert by_thread["event_loop"] > 0 and any(k.startswith("sqlite-w-") for k in by_thread), by_thread
    for fan in details["fanout"]:
        assert fan["delivered"] > fan["acked"]  # each group message reaches the other members
    for echo, bcast in zip(details["echo"], details["broadcast"], strict=True):
        assert echo["completed"] > 0 and echo["lost_in_flight"] == 0
        # each frame reaches all 20 connections (the count stops when the senders' own copies are back)
        assert bcast["completed"] * 2 <= bcast["delivered"] <= bcast["completed"] * 20
    (open_loop,) = details["open_loop"]  # 40 msgs/s offered by 20 users: about 80 in 2 s, every one delivered
    assert open_loop["offered_per_s"] == 40 and 20 <= open_loop["acked"] <= 200
    assert open_loop["delivered"] >= open_loop["acked"] and len(open_loop["runs"]) == 2
    text = (run / "report.md").read_text()
    assert "| idle connections held by one process | 60 of 60 |" in text
    assert "open loop 40 msgs/s, 60 connections" in text and "ratio: CPU per 1:1 message / per echo" in text


def test_scale_fills_only_unset_options() -> None:
    quick = bench_core.parse_args(["--scale", "quick", "--duration-s", "7"])  # no hold phase at this scale
    assert quick.connections == 500 and quick.duration_s == 7 and quick.hold_connections == 0
    full = bench_core.parse_args([])
    assert full.connections == 10_000 and full.hold_connections == 19_000 and full.open_rates == [1000, 3000]
    assert full.repeat >= 3
    chosen = bench_core.parse_args(["--connections", "500", "--repeats", "2"])  # today's flags still work
    assert chosen.hold_connections == 0 and chosen.repeat == 2  # a chosen size: no 19,000 phase unless asked


def test_server_set_overrides_one_setting_for_a_run() -> None:
    settings = bench_core.server_settings(
        ["strategies.store.messages={kind: sqlite, cache_size_kib: 65536}", "limits.rate_per_s=5"]
    )
    assert settings["strategies"]["store"]["messages"] == {"kind": "sqlite", "cache_size_kib": 65536}
    assert settings["limits"]["rate_per_s"] == 5
    assert (
        settings["limits"]["outbound_queue_frames"]
        == bench_core.BENCH_SERVER["limits"]["outbound_queue_frames"]
    )
    assert "strategies" not in bench_core.BENCH_SERVER  # the defaults are not changed in place
    with pytest.raises(ValueError, match=r"expected dotted\.key=value"):
        bench_core.server_settings(["limits.rate_per_s"])
    with pytest.raises(SystemExit):
        bench_core.parse_args(["--server-set", "nokey"])


def test_split_spreads_the_remainder() -> None:
    assert bench_core.split(7, 3) == [3, 2, 2] and bench_core.split(1, 2) == [1, 0]


def test_median_of_nested_phase_results() -> None:
    runs = [
        {"rate": 10.0, "lat": {"p50": 1.0, "p99": None}, "ok": True},
        {"rate": 30.0, "lat": {"p50": 3.0, "p99": 9.0}, "ok": True},
        {"rate": 20.0, "lat": {"p50": 2.0, "p99": 7.0}, "ok": False},
    ]
    assert bench_core.median_of(runs) == {"rate": 20.0, "lat": {"p50": 2.0, "p99": 8.0}, "ok": True}


def _gc_scrape(with_gauge: bool) -> str:
    lines = [
        "# TYPE wsim_gc_pause_seconds histogram",
        'wsim_gc_pause_seconds_bucket{generation="0",le="0.01"} 3.0',
        'wsim_gc_pause_seconds_bucket{generation="0",le="0.02"} 4.0',
        'wsim_gc_pause_seconds_bucket{generation="0",le="0.05"} 5.0',
        'wsim_gc_pause_seconds_bucket{generation="0",le="+Inf"} 5.0',
        'wsim_gc_pause_seconds_count{generation="0"} 5.0',
        'wsim_gc_pause_seconds_sum{generation="0"} 0.07',
        'wsim_gc_pause_seconds_bucket{generation="1",le="0.01"} 0.0',
        'wsim_gc_pause_seconds_bucket{generation="1",le="0.02"} 0.0',
        'wsim_gc_pause_seconds_bucket{generation="1",le="0.05"} 0.0',
        'wsim_gc_pause_seconds_bucket{generation="1",le="+Inf"} 1.0',
        'wsim_gc_pause_seconds_count{generation="1"} 1.0',
        'wsim_gc_pause_seconds_sum{generation="1"} 0.9',
    ]
    if with_gauge:
        lines += [
            "# TYPE wsim_gc_pause_max_seconds gauge",
            'wsim_gc_pause_max_seconds{generation="0"} 0.031',
            'wsim_gc_pause_max_seconds{generation="1"} 0.905',
        ]
    return "\n".join(lines) + "\n"


def test_gc_figures_from_the_servers_metrics() -> None:
    gc = bench_core._gc(prom.parse(_gc_scrape(with_gauge=True)))
    assert gc["pauses_over_20ms"] == 2 and gc["max_pause_ms"] == pytest.approx(905)
    # a server without the gauge: the buckets bound the longest pause (here it is beyond the last finite bound)
    older = bench_core._gc(prom.parse(_gc_scrape(with_gauge=False)))
    assert older["pauses_over_20ms"] == 2 and older["max_pause_ms"] == pytest.approx(50)


def test_gc_pauses_between_scrapes_in_wall_and_cpu_time() -> None:
    """A pause is wall time; the collecting thread's CPU during it tells the collector's work from descheduling."""
    cpu = [
        "# TYPE wsim_gc_pause_cpu_seconds histogram",
        'wsim_gc_pause_cpu_seconds_bucket{generation="0",le="0.01"} 5.0',
        'wsim_gc_pause_cpu_seconds_bucket{generation="0",le="0.02"} 5.0',
        'wsim_gc_pause_cpu_seconds_bucket{generation="0",le="0.05"} 5.0',
        'wsim_gc_pause_cpu_seconds_bucket{generation="0",le="+Inf"} 5.0',
        'wsim_gc_pause_cpu_seconds_count{generation="0"} 5.0',
        'wsim_gc_pause_cpu_seconds_sum{generation="0"} 0.012',
    ]
    after = prom.parse(_gc_scrape(with_gauge=True) + "\n".join(cpu) + "\n")
    delta = bench_core._gc_delta({}, after)
    assert delta["0"]["count"] == 5 and delta["0"]["over_20ms"] == 1 and delta["0"]["cpu_over_20ms"] == 0
    assert delta["0"]["total_ms"] == pytest.approx(70) and delta["0"]["cpu_total_ms"] == pytest.approx(12)
    assert "cpu_total_ms" not in delta["1"]  # no CPU histogram for it (a server that predates the metric)
    line = bench_core._gc_line(delta)
    assert "gen0 5 pauses (1 > 20 ms, 70 ms in all; CPU 0 > 20 ms, 12 ms)" in line
    assert "gen1 1 pauses (1 > 20 ms, 900 ms in all)" in line
