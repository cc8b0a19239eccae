"""The experiment harness end to end: the quickstart experiment against real server processes, then every
notebook executed headless on its results."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

import run_experiment
from core.config import deep_merge
from experiments.analysis import reports
from experiments.analysis.notebooks import COMPARISONS, run_notebooks
from experiments.harness.config import base_server
from tests.support.processes import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
QUICK = [
    "--set",
    "population.users=30",
    "--set",
    "workload.duration_s=8",
    "--set",
    "workload.drain_s=8",
    "--set",
    "population.groups=2",
    "--set",
    'matrix={strategies.ack: [three_state, "off"]}',
    "--set",
    "repetitions=1",
]  # fmt: skip  (the swarm cells only: Locust has its own end-to-end test below)


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small quickstart run (~30 s) for the whole session: under pytest-xdist the two tests that read it may
    land on different workers, which share the base temp directory's parent, so the first makes it under a file
    lock and the other waits for it and reads it."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    out = base / "quickstart-reports"
    with (base / "quickstart-reports.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = base / "quickstart-reports.done"
        if not done.is_file():
            shutil.rmtree(out, ignore_errors=True)  # a worker that died half-way
            code = run_experiment.main(
                [
                    str(ROOT / "experiments" / "quickstart.yaml"),
                    "--reports",
                    str(out),
                    "--no-progress",
                    *QUICK,
                ]
            )
            assert code == 0
            done.touch()
    return reports.latest_run(out, "quickstart")


@pytest.mark.slow
def test_quickstart_end_to_end(quickstart_run: Path) -> None:
    run = quickstart_run
    for name in ("config.resolved.yaml", "metadata.json", "summary.json", "report.md", "metrics.csv"):
        assert (run / name).is_file(), name
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["git_sha"] and "git_dirty" in meta and meta["cpu_count"] >= 1
    assert meta["libraries"]["websockets"] != "not installed" and meta["failures"] == []
    assert sorted(p.name for p in (run / "cells").iterdir()) == ["ack=off", "ack=three_state"]
    rep = run / "cells" / "ack=three_state" / "rep0"
    for table in ("sends", "receives", "events"):
        assert list(rep.glob(f"*.{table}.parquet")), table
    cells = reports.summary(run)["cells"]
    on = cells["ack=three_state"]["metrics"]
    assert on["sends"]["mean"] > 0
    assert on["delivery_rate"]["mean"] == 1.0 and on["delivery_rate"]["n"][0] > 0
    assert on["duplicate_rate"]["mean"] == 0.0
    assert on["streams_in_order_rate"]["mean"] == 1.0
    assert on["reconnect_success_rate"]["mean"] == 1.0 and on["reconnect_success_rate"]["n"][0] > 0
    assert on["send_ack_p99_ms"]["mean"] > 0
    off = cells["ack=off"]["metrics"]
    assert off["send_ack_p99_ms"]["mean"] is None  # no acks exist with ack off
    assert off["sends"]["mean"] > 0
    report = (run / "report.md").read_text()
    assert "| delivery_rate |" in report and "ack=three_state" in report


@pytest.mark.slow
def test_every_notebook_executes_on_the_quickstart_results(quickstart_run: Path, tmp_path: Path) -> None:
    reports_dir = quickstart_run.parents[1]
    figures_dir = tmp_path / "figures"
    done = run_notebooks(
        ROOT / "notebooks",
        reports=reports_dir,
        figures=figures_dir,
        output_dir=tmp_path / "executed",
        parameters={"experiment": "quickstart"},
    )
    assert len(done) == len(COMPARISONS) + 1  # every comparison notebook and the summary
    for metric in reports.headline(quickstart_run):
        assert (figures_dir / f"quickstart__{metric}.png").stat().st_size > 10_000
        assert (figures_dir / f"quickstart__{metric}.pdf").is_file()
    assert (figures_dir / "summary__headline.png").is_file()


def test_dry_run_prints_the_plan_and_starts_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_experiment.main([str(ROOT / "experiments" / "retry_policies.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "4 cell(s) x 3 repetition(s)" in out
    assert all(f"retry={kind}" in out for kind in ("none", "fixed", "exponential", "adaptive"))


def test_invalid_experiment_exits_2_naming_the_path(capsys: pytest.CaptureFixture[str]) -> None:
    code = run_experiment.main(
        [
            str(ROOT / "experiments" / "quickstart.yaml"),
            "--dry-run",
            "--set",
            "matrix={strategies.ack: [three_state, sometimes]}",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "strategies.ack" in err and "'sometimes'" in err and "'three_state'" in err


@pytest.mark.slow
def test_locust_driver_end_to_end(tmp_path: Path) -> None:
    exp = tmp_path / "locust_smoke.yaml"
    exp.write_text(
        "name: locust_smoke\n"
        "question: does the Locust driver speak the protocol and keep the ledger?\n"
        "driver: locust\n"
        "population: {users: 16, friends_per_user: 2, groups: 2, group_size: 4}\n"
        "workload: {duration_s: 5, rate_per_user_per_s: 1.0, group_fraction: 0.3, drain_s: 8, drain_quiet_s: 1}\n"
        "faults: [{type: drop, at_s: 2, fraction: 0.25}]\n"
        "locust: {spawn_rate_per_s: 50}\n",
        encoding="utf-8",
    )
    assert run_experiment.main([str(exp), "--reports", str(tmp_path / "reports"), "--no-progress"]) == 0
    run = reports.latest_run(tmp_path / "reports", "locust_smoke")
    metrics = reports.summary(run)["cells"]["default"]["metrics"]
    assert metrics["sends"]["mean"] > 0
    assert metrics["delivery_rate"]["mean"] == 1.0
    assert metrics["send_ack_p50_ms"]["mean"] > 0
    stats = (run / "cells" / "default" / "rep0" / "locust_stats.csv").read_text()
    assert "message.send" in stats and "message.deliver" in stats
    assert not (run / "cells" / "default" / "rep0" / "locust_plan.json").exists()  # tokens are not kept
    # Locust's own statistics sit beside the ledger's, per repetition
    assert metrics["locust_send_p99_ms"]["mean"] > 0 and metrics["locust_send_p99_ms"]["n"][0] > 0
    assert metrics["locust_deliver_p99_ms"]["mean"] > 0
    assert metrics["locust_failures"]["mean"] is not None and metrics["locust_failures"]["n"][0] > 0
    # connections are measured from the ledger's events: exactly the clients that connected
    rep = run / "cells" / "default" / "rep0"
    events = pd.concat(pd.read_parquet(p) for p in rep.glob("*.events.parquet"))
    really = events.loc[events["event"] == "connected", "client"].nunique()
    assert 0 < really <= 16
    assert metrics["connected"]["mean"] == really
    assert json.loads((rep / "driver.json").read_text())["connected"] == really
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["driver"] == {"default": "locust"}


def test_cell_filter_in_dry_run(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(ROOT / "experiments" / "retry_policies.yaml")
    assert run_experiment.main([path, "--dry-run", "--cell", "retry=none"]) == 0
    assert "1 cell(s)" in capsys.readouterr().out
    assert run_experiment.main([path, "--dry-run", "--cell", "retry=sometimes"]) == 2
    assert "cells: retry=none, retry=fixed, retry=exponential" in capsys.readouterr().err


@pytest.mark.slow
def test_two_node_cluster_with_a_node_kill(tmp_path: Path) -> None:
    """Clients spread over two nodes on a private Redis bus; node 2 is killed and restarted mid-run: its clients
    fail over, and every message still reaches every member."""
    exp = tmp_path / "cluster_smoke.yaml"
    exp.write_text(
        "name: cluster_smoke\n"
        "question: do two nodes deliver across the bus through a node crash?\n"
        "cluster: {nodes: 2}\n"
        "backends: {redis: {}}\n"
        "server:\n"
        "  strategies:\n"
        '    bus: {kind: redis, url: "{backend.redis.url}", prefix: "b{run.id}"}\n'
        '    presence: {kind: redis, url: "{backend.redis.url}", prefix: "p{run.id}"}\n'
        '    cache: {kind: "off"}\n'
        "population: {users: 24, friends_per_user: 2, groups: 2, group_size: 6}\n"
        "workload: {duration_s: 8, rate_per_user_per_s: 1.0, group_fraction: 0.3, drain_s: 15}\n"
        "faults: [{type: node_kill, at_s: 3, down_s: 1, node: 1}]\n",
        encoding="utf-8",
    )
    assert run_experiment.main([str(exp), "--reports", str(tmp_path / "reports"), "--no-progress"]) == 0
    run = reports.latest_run(tmp_path / "reports", "cluster_smoke")
    metrics = reports.summary(run)["cells"]["default"]["metrics"]
    assert metrics["delivery_rate"]["mean"] == 1.0 and metrics["delivery_rate"]["n"][0] > 0
    assert metrics["disconnects"]["mean"] > 0  # the killed node's clients
    assert metrics["reconnect_success_rate"]["mean"] == 1.0
    rep = run / "cells" / "default" / "rep0"
    assert (rep / "server-node1.log").is_file() and (rep / "server-node2.log").is_file()


@pytest.fixture
def external_node(tmp_path: Path) -> Iterator[str]:
    """A wsim node the harness did not start: ``python -m core.cli serve`` on a free port, a temp data dir."""
    port = free_port()
    settings = deep_merge(
        base_server(), {"server": {"host": "127.0.0.1", "port": port, "data_dir": str(tmp_path / "data")}}
    )
    config = tmp_path / "node.yaml"
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    log = (tmp_path / "node.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "serve", "--config", str(config)], stdout=log, stderr=log, cwd=ROOT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "node.log").read_text()[-2000:]
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the node did not become ready"
            time.sleep(0.05)
        yield url
    finally:
        stop_process(proc, 20)
        log.close()


@pytest.mark.slow
def test_external_target_end_to_end(external_node: str, tmp_path: Path) -> None:
    """--target drives a node the harness did not start: population over REST, load over its WebSocket, its
    /metrics scraped; the run's metadata names the target. The same node twice: user names do not collide."""
    argv = [
        str(ROOT / "experiments" / "quickstart.yaml"), "--reports", str(tmp_path / "reports"), "--no-progress",
        "--cell", "ack=three_state", "--target", external_node, *QUICK,
        "--set", "population.users=12", "--set", "workload.duration_s=4", "--set", "workload.drain_s=6",
    ]  # fmt: skip
    assert run_experiment.main(argv) == 0
    run = reports.latest_run(tmp_path / "reports", "quickstart")
    metrics = reports.summary(run)["cells"]["ack=three_state"]["metrics"]
    assert metrics["sends"]["mean"] > 0
    assert metrics["delivery_rate"]["mean"] == 1.0 and metrics["delivery_rate"]["n"][0] > 0
    assert metrics["send_ack_p99_ms"]["mean"] > 0
    assert metrics["connected"]["mean"] == 12
    assert metrics["server_messages_stored"]["mean"] > 0  # the target's /metrics, scraped before and after
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["target"]["cells"] == {"ack=three_state": [external_node]}
    assert meta["target"]["metrics"] == "scraped" and meta["target"]["metrics_errors"] == []
    assert "External target" in (run / "report.md").read_text()
    assert not list((run / "cells" / "ack=three_state" / "rep0").glob("server*.log"))  # no node was started
    # A second run on the same deployment registers fresh users.
    assert run_experiment.main(argv) == 0


def test_external_target_refuses_process_faults(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(ROOT / "experiments" / "cluster_bus.yaml")
    assert run_experiment.main([path, "--dry-run", "--target", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "node_kill) needs process control" in err
    assert run_experiment.main([path, "--dry-run", "--target", "http://127.0.0.1:9/ws"]) == 2
    assert "expected a node's base URL" in capsys.readouterr().err
    quick = str(ROOT / "experiments" / "quickstart.yaml")
    cell = "ack=off+driver=swarm"
    assert run_experiment.main([quick, "--dry-run", "--target", f"{cell}=http://127.0.0.1:9"]) == 2
    assert "ack=three_state+driver=swarm: no --target" in capsys.readouterr().err


@pytest.mark.slow
def test_several_devices_per_user_each_get_every_message(tmp_path: Path) -> None:
    """Every device of a member gets the message, the sender's other devices included (multi_device.yaml)."""
    args = [
        str(ROOT / "experiments" / "multi_device.yaml"), "--reports", str(tmp_path / "reports"), "--no-progress",
        "--cell", "devices_per_user=2", "--set", "population.users=10", "--set", "population.groups=1",
        "--set", "population.group_size=4", "--set", "workload.duration_s=4", "--set", "workload.drain_s=8",
        "--set", "workload.rate_per_user_per_s=1", "--set", "repetitions=1",
    ]  # fmt: skip
    assert run_experiment.main(args) == 0
    run = reports.latest_run(tmp_path / "reports", "multi_device")
    metrics = reports.summary(run)["cells"]["devices_per_user=2"]["metrics"]
    assert metrics["connected"]["mean"] == 20 and metrics["connected"]["n"] == [20]
    assert metrics["delivery_rate"]["mean"] == 1.0
    rep = run / "cells" / "devices_per_user=2" / "rep0"
    receives = pd.concat(pd.read_parquet(p) for p in rep.glob("*.receives.parquet"))
    sender = receives["cmid"].str.rsplit("-", n=1).str[0].astype(int)
    # client index = user * 2 + device: the sender's other device got the sender's own messages
    own = receives[(receives["client"] // 2 == sender // 2) & (receives["client"] != sender)]
    assert len(own) > 0
    members = json.loads((rep / "membership.json").read_text())
    assert all(len(v) % 2 == 0 for v in members.values())  # both devices of every member are expected
    # the header names what the cells vary "per cell" (see the report's Cells line), not the base value
    assert "10 users x per cell device(s), driver swarm" in (run / "report.md").read_text()


@pytest.mark.slow
def test_tiering_reads_pages_from_every_tier(tmp_path: Path) -> None:
    """population.history seeds old messages, the tier job moves them, and history reads reach hot, warm and cold
    pages (tiering.yaml); with tiering off the same ages are read from the hot store."""
    args = [
        str(ROOT / "experiments" / "tiering.yaml"), "--reports", str(tmp_path / "reports"), "--no-progress",
        "--cell", "all_hot", "--cell", "warm_sqlite", "--set", "population.users=6", "--set",
        "population.groups=1", "--set", "population.group_size=3", "--set", "population.history.messages_per_conversation=80",
        "--set", "population.history.oldest_days=236", "--set", "workload.duration_s=4", "--set", "workload.drain_s=5",
        "--set", "workload.history_page=5",
        "--set", "workload.history_rate_per_user_per_s=10", "--set", "repetitions=1",
    ]  # fmt: skip
    assert run_experiment.main(args) == 0
    run = reports.latest_run(tmp_path / "reports", "tiering")
    cells = reports.summary(run)["cells"]
    for cell in ("all_hot", "warm_sqlite"):
        metrics = cells[cell]["metrics"]
        assert metrics["history_error_rate"]["mean"] == 0.0, cell
        for band in ("hot", "warm", "cold"):
            assert metrics[f"history_{band}_p99_ms"]["n"][0] > 0, (cell, band)
        assert metrics["delivery_rate"]["mean"] == 1.0, cell
    driver = json.loads((run / "cells" / "warm_sqlite" / "rep0" / "driver.json").read_text())
    old = driver["old_history"]
    assert old["conversations"] == 7 and old["stored"] == 7 * 80  # 6 ring friendships + 1 group
    # message i of 80 is 2.95 * (80 - i) days old (no age on a tier boundary): 70 are older than 30 days and
    # leave hot, 40 older than 120 days reach cold; pages of 5 at a uniform depth reach hot ones ~7 % of the time
    assert old["tier_job"]["to_warm"] == 70 * 7 and old["tier_job"]["to_cold"] == 40 * 7
    hot = json.loads((run / "cells" / "all_hot" / "rep0" / "driver.json").read_text())["old_history"]
    assert "tier_job" not in hot
    reads = reports.ledger(run, "history")
    assert set(reads["status"]) == {200} and (reads["count"] > 0).all()


@pytest.mark.slow
def test_read_split_moves_account_reads_to_the_replica_and_survives_its_crash(tmp_path: Path) -> None:
    """read_split.yaml, shortened: with the split, the replica serves the account reads; killed mid-load, they fall
    back to the primary and none fails; each MariaDB process's CPU is measured."""
    doc = yaml.safe_load((ROOT / "experiments" / "read_split.yaml").read_text())
    for cell in doc["cells"]:
        for fault in cell["set"].get("faults", []):
            fault.update(at_s=3, down_s=3)  # inside a 10 s load
    path = tmp_path / "read_split.yaml"
    path.write_text(yaml.safe_dump(doc))
    args = [
        str(path), "--reports", str(tmp_path / "reports"), "--no-progress", "--cell", "primary_only",
        "--cell", "split_replica_crash", "--set", "population.users=8", "--set", "population.groups=1",
        "--set", "population.group_size=3", "--set", "workload.duration_s=10", "--set", "workload.drain_s=4",
        "--set", "workload.search_rate_per_user_per_s=4", "--set", "workload.requests_rate_per_user_per_s=4",
        "--set", "workload.befriend_rate_per_user_per_s=0.5", "--set", "repetitions=1",
    ]  # fmt: skip
    assert run_experiment.main(args) == 0
    run = reports.latest_run(tmp_path / "reports", "read_split")
    cells = reports.summary(run)["cells"]
    for name in ("primary_only", "split_replica_crash"):
        metrics = cells[name]["metrics"]
        assert metrics["rest_error_rate"]["mean"] == 0.0, name
        assert metrics["delivery_rate"]["mean"] == 1.0, name
        assert metrics["backend_mariadb_primary_cpu_s"]["mean"] > 0, name
        for kind in ("search", "requests", "befriend"):
            assert metrics[f"rest_{kind}_p99_ms"]["n"][0] > 0, (name, kind)
    assert cells["primary_only"]["metrics"]["replica_read_share"]["mean"] == 0.0
    crash = cells["split_replica_crash"]["metrics"]
    assert crash["replica_read_share"]["mean"] > 0  # before the crash and after the restart
    assert crash["replica_fallbacks"]["mean"] > 0  # while it was down
    driver = json.loads((run / "cells" / "split_replica_crash" / "rep0" / "driver.json").read_text())
    assert [f["type"] for f in driver["faults"]] == ["backend_restart"]
    calls = reports.ledger(run, "rest")
    assert set(calls["kind"]) == {"search", "requests", "befriend"}
