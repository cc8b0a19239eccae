"""Metric functions on synthetic ledgers whose answers are known by construction."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from experiments.analysis import metrics as m
from experiments.analysis import prom
from experiments.load.ledger import (
    EVENT_COLUMNS,
    HISTORY_COLUMNS,
    RECV_COLUMNS,
    REST_COLUMNS,
    SEND_COLUMNS,
    Ledger,
    SendRecord,
    SendState,
)

MS = 1_000_000  # ns


def send(
    client: int, n: int, conv: str, t_ms: int, state: str = "acked", ack_ms: int | None = None
) -> dict[str, Any]:
    return {
        "client": client, "user": f"u{client}", "device": f"d{client}", "cmid": f"{client}-{n}", "conv": conv,
        "is_group": conv.startswith("g:"), "t_send_ns": t_ms * MS,
        "t_ack_ns": (ack_ms if ack_ms is not None else t_ms + 2) * MS if state == "acked" else 0,
        "state": state, "seq": 0, "msg_id": "", "attempts": 1, "error": "", "duplicate": False,
        "sent_twice": False,
    }  # fmt: skip


def recv(
    client: int, conv: str, seq: int, sender: int, n: int, t_ms: int, sent_ms: int, via: str = "push"
) -> dict[str, Any]:
    return {
        "client": client, "user": f"u{client}", "conv": conv, "seq": seq, "msg_id": f"m{seq}",
        "sender": f"u{sender}", "sender_device": f"d{sender}", "cmid": f"{sender}-{n}", "t_recv_ns": t_ms * MS,
        "t_sent_ns": sent_ms * MS, "via": via,
    }  # fmt: skip


def frame(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(columns))


MEMBERS = {"d:1:2": [0, 1], "g:9": [0, 1, 2, 3]}


def test_delivery_counts_lost_and_duplicated_messages() -> None:
    sends = frame(
        [
            send(0, 1, "d:1:2", 0),  # delivered to 1
            send(0, 2, "d:1:2", 10),  # lost
            send(1, 1, "d:1:2", 20),  # delivered twice to 0 (a duplicate)
            send(0, 3, "g:9", 30),  # group: 3 recipients, one missing
            send(0, 4, "d:1:2", 40, state="unknown"),  # never acked, delivered anyway
        ],
        SEND_COLUMNS,
    )
    receives = frame(
        [
            recv(1, "d:1:2", 1, 0, 1, 5, 0),
            recv(0, "d:1:2", 2, 1, 1, 25, 20),
            recv(0, "d:1:2", 3, 1, 1, 26, 20),
            recv(1, "g:9", 1, 0, 3, 35, 30),
            recv(2, "g:9", 1, 0, 3, 36, 30),
            recv(1, "d:1:2", 4, 0, 4, 45, 40),
        ],
        RECV_COLUMNS,
    )
    d = m.delivery(sends, receives, MEMBERS)
    assert d["expected_deliveries"]["value"] == 1 + 1 + 1 + 3 + 1
    assert d["lost_deliveries"]["value"] == 2  # 0-2 to client 1, 0-3 to client 3
    assert d["delivery_rate"] == {"value": 5 / 7, "n": 7}
    assert d["delivery_rate_acked"] == {"value": 4 / 6, "n": 6}
    assert d["duplicate_deliveries"]["value"] == 1
    assert d["duplicate_rate"] == {"value": 1 / 5, "n": 5}
    assert d["send_success_rate"] == {"value": 4 / 5, "n": 5}
    assert d["sends_unknown"]["value"] == 1


def test_ack_off_written_sends_count_as_sent() -> None:
    sends = frame([send(0, 1, "d:1:2", 0, state="written")], SEND_COLUMNS)
    receives = frame([recv(1, "d:1:2", 1, 0, 1, 3, 0)], RECV_COLUMNS)
    d = m.delivery(sends, receives, MEMBERS)
    assert d["send_success_rate"]["value"] == 1.0
    assert d["delivery_rate_acked"]["value"] == 1.0


def test_ordering_finds_seq_regressions_and_sender_reorders() -> None:
    receives = frame(
        [
            # client 1, d:1:2: seq 1, 2, then 2 again (regression) -> 1 violation
            recv(1, "d:1:2", 1, 0, 1, 1, 0),
            recv(1, "d:1:2", 2, 0, 2, 2, 0),
            recv(1, "d:1:2", 2, 0, 2, 3, 0),
            # client 2, g:9: seq increasing but sender 0's message 5 released before its message 4
            recv(2, "g:9", 1, 0, 5, 1, 0),
            recv(2, "g:9", 2, 0, 4, 2, 0),
            recv(2, "g:9", 3, 3, 1, 3, 0),
            # client 3, g:9: perfect
            recv(3, "g:9", 1, 0, 4, 1, 0),
            recv(3, "g:9", 2, 0, 5, 2, 0),
        ],
        RECV_COLUMNS,
    )
    o = m.ordering(receives)
    assert o["order_violations"]["value"] == 1
    assert o["sender_order_violations"]["value"] == 1
    assert o["streams_in_order_rate"] == {"value": 1 / 3, "n": 3}


def test_latency_percentiles_from_hdr_histograms() -> None:
    sends = frame([send(0, i, "d:1:2", 0, ack_ms=i) for i in range(1, 101)], SEND_COLUMNS)
    receives = frame(
        [recv(1, "d:1:2", i, 0, i, 1000 + i * 10, 1000) for i in range(1, 11)]
        + [recv(1, "d:1:2", 11, 0, 11, 5000, 1000, via="sync")],
        RECV_COLUMNS,
    )
    lat = m.latency(sends, receives)
    assert lat["send_ack_p50_ms"]["n"] == 100
    assert lat["send_ack_p50_ms"]["value"] == pytest.approx(50, rel=0.01)
    assert lat["send_ack_p99_ms"]["value"] == pytest.approx(99, rel=0.01)
    assert lat["send_deliver_p50_ms"]["n"] == 10  # push only
    assert lat["send_deliver_max_ms"]["value"] == pytest.approx(100, rel=0.01)
    assert lat["send_deliver_all_max_ms"]["value"] == pytest.approx(4000, rel=0.01)


def test_offline_push_success_and_latency() -> None:
    events = frame(
        [
            {"client": 1, "t_ns": 100 * MS, "event": "offline", "code": 0, "detail": ""},
            {"client": 1, "t_ns": 300 * MS, "event": "online", "code": 0, "detail": ""},
        ],
        EVENT_COLUMNS,
    )
    sends = frame([send(0, 1, "d:1:2", 50), send(0, 2, "d:1:2", 150), send(0, 3, "d:1:2", 200)], SEND_COLUMNS)
    receives = frame(
        [recv(1, "d:1:2", 1, 0, 1, 55, 50), recv(1, "d:1:2", 2, 0, 2, 320, 150, via="sync")], RECV_COLUMNS
    )
    o = m.offline_push(sends, receives, events, MEMBERS, end_ns=10_000 * MS)
    assert o["offline_push_success"] == {"value": 0.5, "n": 2}  # 0-2 arrived after coming back, 0-3 never
    assert o["offline_push_p99_ms"]["value"] == pytest.approx(20, rel=0.01)


def test_reconnect_episodes_success_and_spontaneous_disconnects() -> None:
    ev = [
        # client 0: dropped by the fault, reconnects after 150 ms
        {"client": 0, "t_ns": 1000 * MS, "event": "drop", "code": 0, "detail": ""},
        {"client": 0, "t_ns": 1001 * MS, "event": "closed", "code": 1006, "detail": ""},
        {"client": 0, "t_ns": 1151 * MS, "event": "reconnected", "code": 0, "detail": str(150 * MS)},
        # client 1: closed by the server out of the blue, never comes back
        {"client": 1, "t_ns": 5000 * MS, "event": "closed", "code": 1011, "detail": ""},
        {"client": 1, "t_ns": 5100 * MS, "event": "connect_failed", "code": 0, "detail": "OSError"},
        # client 2: goes offline on purpose (clean close) and comes back: not a reconnect episode
        {"client": 2, "t_ns": 100 * MS, "event": "offline", "code": 0, "detail": ""},
        {"client": 2, "t_ns": 101 * MS, "event": "closed", "code": 1000, "detail": ""},
        {"client": 2, "t_ns": 900 * MS, "event": "reconnected", "code": 0, "detail": str(10 * MS)},
    ]
    r = m.reconnects(frame(ev, EVENT_COLUMNS))
    assert r["reconnect_success_rate"] == {"value": 0.5, "n": 2}
    assert r["reconnect_p50_ms"]["value"] == pytest.approx(150, rel=0.01)
    assert r["disconnects"]["value"] == 2
    assert r["spontaneous_disconnects"]["value"] == 1
    # the same close inside an injected fault window (node kill) is not spontaneous
    r2 = m.reconnects(frame(ev, EVENT_COLUMNS), fault_windows=[(4900 * MS, 5200 * MS)])
    assert r2["spontaneous_disconnects"]["value"] == 0


def test_empty_ledgers_give_empty_figures_not_errors() -> None:
    empty_s, empty_r, empty_e = frame([], SEND_COLUMNS), frame([], RECV_COLUMNS), frame([], EVENT_COLUMNS)
    out = m.compute_all(empty_s, empty_r, empty_e, MEMBERS, duration_s=10, end_ns=0)
    assert out["delivery_rate"] == {"value": None, "n": 0}
    assert out["send_ack_p99_ms"] == {"value": None, "n": 0}
    assert out["streams_in_order_rate"]["n"] == 0


def test_ledger_round_trip_through_parquet(tmp_path: Any) -> None:
    ledger = Ledger()
    rec = SendRecord(0, "u0", "d0", "0-1", "d:1:2", False, 5 * MS)
    ledger.sends.append(rec)
    ledger.sends.append(SendRecord(0, "u0", "d0", "0-2", "d:1:2", False, 6 * MS))
    rec.state, rec.t_ack_ns, rec.seq = SendState.ACKED, 7 * MS, 3
    ledger.receive(1, "u1", "d:1:2", 3, "m3", "u0", "d0", "0-1", 9 * MS, 5 * MS, "push")
    ledger.event(1, 1, "connected")
    ledger.finish(ack_off=False)
    paths = ledger.write(tmp_path, "w0")
    sends = pd.read_parquet(paths["sends"])
    assert list(sends["state"]) == ["acked", "unknown"]
    assert list(pd.read_parquet(paths["receives"])["cmid"]) == ["0-1"]
    assert list(pd.read_parquet(paths["events"])["event"]) == ["connected"]


PROM_TEXT = """# TYPE wsim_send_ack_seconds histogram
wsim_send_ack_seconds_bucket{le="0.001"} %d
wsim_send_ack_seconds_bucket{le="0.01"} %d
wsim_send_ack_seconds_bucket{le="0.1"} %d
wsim_send_ack_seconds_bucket{le="+Inf"} %d
wsim_send_ack_seconds_count %d
wsim_send_ack_seconds_sum 1.0
# TYPE wsim_cache_hits counter
wsim_cache_hits_total{tier="l1",name="user"} %d
# TYPE wsim_cache_misses counter
wsim_cache_misses_total{tier="l1",name="user"} %d
"""


def test_prometheus_deltas_and_bucket_quantiles() -> None:
    before = prom.parse(PROM_TEXT % (0, 0, 0, 0, 0, 10, 10))
    after = prom.parse(PROM_TEXT % (50, 90, 100, 100, 100, 100, 20))
    s = prom.histogram_summary(before, after, "wsim_send_ack_seconds")
    assert s["n"] == 100
    assert s["p50"] == pytest.approx(1.0)  # the 50th of 100 is the last one in the first bucket
    assert s["p90"] == pytest.approx(10.0)
    assert s["p99"] == pytest.approx(91.0)  # 9/10 of the way through (0.01, 0.1]
    sm = m.server_metrics(PROM_TEXT % (0, 0, 0, 0, 0, 10, 10), PROM_TEXT % (50, 90, 100, 100, 100, 100, 20))
    assert sm["cache_hit_rate"] == {"value": 0.9, "n": 100}
    # a restarted node (counters went down): the after scrape alone
    assert prom.delta(prom.parse(PROM_TEXT % (0, 0, 0, 0, 0, 500, 0)), after, "wsim_cache_hits_total") == 100


def test_push_order_counts_what_the_server_sent_before_the_buffer() -> None:
    from experiments.load.ledger import ARRIVAL_COLUMNS

    rows = [
        # device 1, conv a: 1, 3, 2 (late), 3 again (duplicate) -> 1 violation, 1 duplicate
        (1, "a", 1, 1 * MS), (1, "a", 3, 2 * MS), (1, "a", 2, 3 * MS), (1, "a", 3, 4 * MS),
        # device 2, conv a: in order
        (2, "a", 1, 1 * MS), (2, "a", 2, 2 * MS),
        # device 1, conv b: in order, one duplicate of the newest
        (1, "b", 5, 1 * MS), (1, "b", 5, 2 * MS),
    ]  # fmt: skip
    arrivals = pd.DataFrame(rows, columns=list(ARRIVAL_COLUMNS))
    out = m.push_order(arrivals)
    assert out["push_order_violations"] == {"value": 1.0, "n": 6}
    assert out["push_duplicates"] == {"value": 2.0, "n": 8}
    assert out["push_duplicate_rate"]["value"] == pytest.approx(2 / 8)
    assert out["push_streams_in_order_rate"] == {"value": pytest.approx(2 / 3), "n": 3}
    assert m.push_order(pd.DataFrame())["push_duplicates"] == {"value": None, "n": 0}


def test_recovered_by_sync_and_visible_latency_count_the_first_release_by_any_path() -> None:
    receives = frame(
        [
            recv(1, "d:1:2", 1, 0, 1, 6, 1),  # pushed after 5 ms
            recv(1, "d:1:2", 2, 0, 2, 900, 10, via="sync"),  # lost push, recovered by sync 890 ms later
            recv(1, "d:1:2", 2, 0, 2, 950, 10),  # the late push after it does not count
            recv(1, "d:1:2", 3, 0, 3, 30, 20),  # pushed after 10 ms
        ],
        RECV_COLUMNS,
    )
    assert m.recovered_by_sync(receives)["recovered_by_sync_rate"] == {"value": pytest.approx(1 / 3), "n": 3}
    lat = m.latency(frame([], SEND_COLUMNS), receives)
    assert lat["send_deliver_max_ms"]["n"] == 2  # push-only: the sync-recovered message is left out
    assert lat["send_deliver_all_max_ms"] == {"value": pytest.approx(890, rel=1e-3), "n": 3}


def test_history_reads_are_filed_by_the_age_of_the_oldest_message_on_the_page() -> None:
    day = m.DAY_MS
    now_ms = 1_000 * day
    t_ns = now_ms * MS

    def read(latency_ms: int, age_days: float, status: int = 200, count: int = 20) -> dict[str, Any]:
        oldest = now_ms - int(age_days * day)
        return {
            "client": 0, "conv": "d:1:2", "before": 10, "t_ns": t_ns, "latency_us": latency_ms * 1000,
            "status": status, "count": count, "oldest_ts_ms": oldest, "newest_ts_ms": oldest + 1,
        }  # fmt: skip

    rows = [read(2, 1), read(4, 29.9), read(10, 31), read(12, 120), read(50, 121), read(70, 400)]
    rows += [read(1, 1, status=401, count=0), read(1, 500, count=0)]  # refused; a page with nothing in it
    rows += [read(0, 1, status=-1, count=0)]  # not made: the client had its cap in flight
    out = m.history_reads(pd.DataFrame(rows, columns=list(HISTORY_COLUMNS)), hot_days=30, warm_days=120)
    assert out["history_reads"] == {"value": 8.0, "n": 8}
    assert out["history_skipped_rate"] == {"value": 1 / 9, "n": 9}
    assert out["history_error_rate"] == {"value": 0.25, "n": 8}
    hdr = pytest.approx  # HDR histograms keep 3 significant digits
    assert out["history_hot_p99_ms"] == {"value": hdr(4.0, rel=1e-3), "n": 2}
    assert out["history_hot_p50_ms"]["value"] == hdr(2.0, rel=1e-3)
    # 120 days is still warm (up to and including warm_days)
    assert out["history_warm_p99_ms"] == {"value": hdr(12.0, rel=1e-3), "n": 2}
    assert out["history_cold_p99_ms"] == {"value": hdr(70.0, rel=1e-3), "n": 2}
    assert out["history_read_p99_ms"]["n"] == 6
    assert m.history_reads(pd.DataFrame(columns=list(HISTORY_COLUMNS)), 30, 120) == {}


def test_history_reads_go_through_the_ledger_and_only_when_made(tmp_path: Any) -> None:
    ledger = Ledger()
    assert "history" not in ledger.write(tmp_path, "a")  # no reads: no table (older runs have none either)
    ledger.history_read(3, "g:7", 41, 5 * MS, 1234, 200, 20, 100, 200)
    table = pd.read_parquet(ledger.write(tmp_path, "b")["history"])
    assert table.to_dict("records") == [
        {"client": 3, "conv": "g:7", "before": 41, "t_ns": 5 * MS, "latency_us": 1234, "status": 200,
         "count": 20, "oldest_ts_ms": 100, "newest_ts_ms": 200}
    ]  # fmt: skip


def test_rest_calls_by_kind_with_a_conflict_as_an_answer_and_skips_apart() -> None:
    def call(kind: str, latency_ms: int, status: int, count: int = 1) -> tuple[Any, ...]:
        return (0, kind, MS, latency_ms * 1000, status, count)

    rows = [call("search", 3, 200), call("search", 9, 200), call("search", 1, 500)]
    rows += [call("requests", 2, 200), call("requests", 0, 0)]  # 0: no HTTP answer
    rows += [call("befriend", 5, 201), call("befriend", 7, 409), call("befriend", 0, -1)]  # -1: not made
    out = m.rest_calls(pd.DataFrame(rows, columns=list(REST_COLUMNS)))
    assert out["rest_calls"] == {"value": 7.0, "n": 7}
    assert out["rest_skipped_rate"] == {"value": 1 / 8, "n": 8}
    assert out["rest_error_rate"] == {
        "value": 2 / 7,
        "n": 7,
    }  # the 500 and the unanswered one; 409 is an answer
    hdr = pytest.approx
    assert out["rest_search_p99_ms"] == {"value": hdr(9.0, rel=1e-3), "n": 2}
    assert out["rest_requests_p99_ms"] == {"value": hdr(2.0, rel=1e-3), "n": 1}
    assert out["rest_befriend_p99_ms"] == {"value": hdr(7.0, rel=1e-3), "n": 2}
    assert m.rest_calls(pd.DataFrame(columns=list(REST_COLUMNS))) == {}


def test_rest_calls_go_through_the_ledger_only_when_made(tmp_path: Any) -> None:
    ledger = Ledger()
    assert "rest" not in ledger.write(tmp_path, "a")
    ledger.rest_call(2, "search", 5 * MS, 812, 200, 11)
    table = pd.read_parquet(ledger.write(tmp_path, "b")["rest"])
    assert table.to_dict("records") == [
        {"client": 2, "kind": "search", "t_ns": 5 * MS, "latency_us": 812, "status": 200, "count": 11}
    ]


def _reads(replica: float, primary: float, fallbacks: float, lag: float | None) -> str:
    text = (
        f'wsim_store_op_seconds_count{{store="mysql-replica",op="users_read"}} {replica}\n'
        f'wsim_store_op_seconds_count{{store="mysql-primary",op="users_read"}} {primary}\n'
        f'wsim_store_op_seconds_count{{store="mysql-primary",op="users_write"}} 99\n'
        f'wsim_store_replica_fallbacks_total{{store="users",reason="lagging"}} {fallbacks}\n'
    )
    if lag is not None:
        text += f'wsim_store_replica_lag_seconds{{store="users"}} {lag}\n'
    return text


def test_replica_reads_are_a_share_of_the_user_store_reads_between_scrapes() -> None:
    b, a = prom.parse(_reads(10, 5, 1, 0.5)), prom.parse(_reads(70, 25, 4, 0.25))
    out = m.replica_metrics(b, a)
    assert out["replica_read_share"] == {"value": 60 / 80, "n": 80}
    assert out["replica_fallbacks"] == {"value": 3.0, "n": 80}
    assert out["replica_lag_s"] == {"value": 0.25, "n": 1}
    # a MySQL user store without a replica reads nothing from one; other stores report nothing at all
    none = m.replica_metrics(prom.parse(_reads(0, 5, 0, None)), prom.parse(_reads(0, 30, 0, None)))
    assert none["replica_read_share"] == {"value": 0.0, "n": 25} and none["replica_lag_s"]["value"] is None
    assert m.replica_metrics({}, prom.parse("wsim_delivery_retries_total 3\n")) == {}


def test_backend_cpu_is_counted_over_the_load_window_and_from_a_restart() -> None:
    from experiments.harness.runner import backend_cpu_figures

    first = (0, {"mariadb_primary": (100, 5.0), "mariadb_replica": (200, 1.0)})
    last = (
        4_000_000_000,
        {"mariadb_primary": (100, 7.0), "mariadb_replica": (300, 0.5)},
    )  # replica restarted
    out = backend_cpu_figures([first, (1, {}), last])
    assert out["backend_mariadb_primary_cpu_s"] == {"value": 2.0, "n": 1}
    assert out["backend_mariadb_primary_cpu_percent"]["value"] == pytest.approx(50.0)
    assert out["backend_mariadb_replica_cpu_s"] == {"value": 0.5, "n": 1}
    assert backend_cpu_figures([first]) == {}


def test_ledger_sample_keeps_every_kth_client_after_the_metrics(tmp_path: Any) -> None:
    from experiments.harness.runner import sample_ledgers

    ledger = Ledger()
    for client in range(20):
        ledger.sends.append(SendRecord(client, f"u{client}", "d", f"{client}-1", "d:1:2", False, MS))
        ledger.event(client, 1, "connected")
    ledger.finish(ack_off=False)
    paths = ledger.write(tmp_path, "w0")
    assert sample_ledgers(tmp_path, 0.25) == 4
    assert list(pd.read_parquet(paths["sends"])["client"]) == [0, 4, 8, 12, 16]
    assert list(pd.read_parquet(paths["events"])["client"]) == [0, 4, 8, 12, 16]
    assert pd.read_parquet(paths["sends"])["state"].tolist() == ["unknown"] * 5  # types survive the rewrite
    assert "% 4 == 0" in (tmp_path / "ledger_sample.json").read_text()
