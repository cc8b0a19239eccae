"""--target parsing and refusals, the stand-in notes, Locust's statistics as metrics, connections measured from
the ledger: the pure parts of the external-target and Locust paths (the e2e tests run them for real)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from experiments.harness import results
from experiments.harness.config import Cell, ExperimentError, expand, load_experiment, parse_set
from experiments.harness.runner import connected_clients, stand_in_notes
from experiments.harness.target import ALL_CELLS, Target, assign_targets, parse_targets
from experiments.load.locust_driver import locust_figures

ROOT = Path(__file__).resolve().parents[2]


def cells_of(name: str, *sets: str) -> list[Cell]:
    exp, raw = load_experiment(ROOT / "experiments" / f"{name}.yaml", parse_set(list(sets)))
    return expand(exp, raw)


def test_targets_for_every_cell_or_per_cell() -> None:
    assert parse_targets(["http://a:1"]) == {ALL_CELLS: ["http://a:1"]}
    assert parse_targets(["http://a:1/, https://b:2"]) == {ALL_CELLS: ["http://a:1", "https://b:2"]}
    # cell names hold "=" themselves
    assert parse_targets(["ack=off=http://a:1", "mysql=http://b:2"]) == {
        "ack=off": ["http://a:1"],
        "mysql": ["http://b:2"],
    }
    t = Target(["http://a:1", "https://b:2"])
    assert t.rest_url == "http://a:1" and t.ws_urls == ["ws://a:1/ws", "wss://b:2/ws"]


@pytest.mark.parametrize(
    ("items", "error"),
    [
        (["http://a:1/ws"], "no path"),
        (["ftp://a:1"], "base URL"),
        (["mysql="], "base URL"),
        (["http://a:1", "http://b:2"], "every cell is given twice"),
    ],
)
def test_bad_targets_are_clear_errors(items: list[str], error: str) -> None:
    with pytest.raises(ExperimentError, match=error):
        parse_targets(items)


def test_store_backends_against_per_cell_targets() -> None:
    cells = [c for c in cells_of("store_backends") if c.name in ("mysql", "mongo")]
    assigned = assign_targets(cells, parse_targets(["mysql=http://h:8011", "mongo=http://h:8012"]))
    assert {k: v.urls for k, v in assigned.items()} == {
        "mysql": ["http://h:8011"],
        "mongo": ["http://h:8012"],
    }
    with pytest.raises(ExperimentError, match="cell mongo: no --target"):
        assign_targets(cells, parse_targets(["mysql=http://h:8011"]))
    with pytest.raises(ExperimentError, match="unknown or unselected cell"):
        assign_targets(cells, parse_targets(["sqlite=http://h:8010"]))


def test_process_faults_proxy_and_local_clusters_are_refused() -> None:
    with pytest.raises(ExperimentError) as err:
        assign_targets(cells_of("cluster_bus"), parse_targets(["http://h:1"]))
    assert "node_kill) needs process control" in str(err.value) and "cluster.nodes" in str(err.value)
    with pytest.raises(ExperimentError, match="fault proxy"):
        assign_targets(cells_of("ordering_faults"), parse_targets(["http://h:1"]))
    with pytest.raises(ExperimentError, match=r"population\.history writes old messages"):
        assign_targets(cells_of("tiering"), parse_targets(["http://h:1"]))


def test_mongo_stand_in_is_named_unless_the_cell_runs_on_a_target() -> None:
    cells = cells_of("store_backends")
    notes = stand_in_notes(cells, {})
    assert list(notes) == ["mongo"] and "nx-27017" in notes["mongo"] and "not MongoDB" in notes["mongo"]
    assert stand_in_notes(cells, {"mongo": Target(["http://h:8012"])}) == {}
    lines = results._provenance(
        {
            "stand_ins": notes,
            "target": {
                "cells": {"mysql": ["http://h:8011"]},
                "note": "external deployment",
                "metrics": "not reachable",
                "metrics_errors": ["http://h:8011/metrics: ConnectError"],
            },
        }
    )
    text = "\n".join(lines)
    assert "Stand-in, cell `mongo`" in text and "nx-27017" in text
    assert "`mysql` -> http://h:8011" in text and "not reachable" in text and "ConnectError" in text


LOCUST_CSV = """Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%
WS,connect,16,1,3,4.2,1,20,0,1.5,0.1,3,4,4,5,8,12,20,20,20,20,20
WS,message.deliver,120,0,9,11.0,2,90,0,11.0,0.0,9,10,12,13,20,30,60,80,90,90,90
WS,message.send,80,2,6,7.0,1,70,0,7.3,0.2,6,7,8,9,12,20,40,50,70,70,70
WS,idle,0,0,0,0,0,0,0,0,0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A
,Aggregated,216,3,7,8.5,1,90,0,19.8,0.3,7,8,10,11,15,25,50,70,90,90,90
"""


def test_locust_statistics_become_metrics(tmp_path: Path) -> None:
    path = tmp_path / "locust_stats.csv"
    path.write_text(LOCUST_CSV, encoding="utf-8")
    figs = locust_figures(path)
    assert figs["locust_send_p99_ms"] == {"value": 50.0, "n": 80}
    assert figs["locust_send_p50_ms"] == {"value": 6.0, "n": 80}
    assert figs["locust_deliver_p99_ms"] == {"value": 80.0, "n": 120}
    assert figs["locust_connect_p99_ms"] == {"value": 20.0, "n": 16}
    assert figs["locust_failures"] == {"value": 3.0, "n": 216}
    assert figs["locust_requests_per_s"] == {"value": 19.8, "n": 216}


def test_locust_statistics_without_requests_are_empty_not_zero(tmp_path: Path) -> None:
    path = tmp_path / "locust_stats.csv"
    path.write_text(LOCUST_CSV.splitlines()[0] + "\n,Aggregated,0,0,0,0,0,0,0,0,0" + ",N/A" * 11 + "\n")
    figs = locust_figures(path)
    assert figs["locust_send_p99_ms"] == {"value": None, "n": 0}
    assert figs["locust_requests_per_s"] == {"value": None, "n": 0}


def test_connected_counts_clients_that_connected_once() -> None:
    events = pd.DataFrame(
        [
            (0, 1, "connected", 0, ""),
            (0, 2, "drop", 0, ""),
            (0, 3, "reconnected", 0, "5"),
            (1, 1, "connected", 0, ""),
            (2, 1, "closed", 1006, ""),  # never got through auth and sync
        ],
        columns=["client", "t_ns", "event", "code", "detail"],
    )
    assert connected_clients(events) == 2
    assert connected_clients(pd.DataFrame()) == 0
