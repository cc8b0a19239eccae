"""Run an experiment: for every cell and repetition, start the node (a real process) and what the cell needs
(private backends, the fault proxy), build the population, drive the load with the client faults, inject the
server faults on schedule, collect the ledgers and /metrics, compute the metrics, write the result folder."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import psutil

from core.config import deep_merge
from experiments.analysis import metrics as m
from experiments.faults.backends import PrivateBackend, make_backend
from experiments.harness import environment, results
from experiments.harness.config import Cell, Experiment, ExperimentError, base_server, expand, substitute
from experiments.harness.server import ServerProcess
from experiments.harness.target import Target, assign_targets, parse_targets
from experiments.load.coordinator import WorkerPool, prepare_population, source_addresses
from experiments.load.locust_driver import locust_figures
from experiments.load.spec import CLIENT_FAULT_TYPES, BackendRestartFault, NodeKillFault, OldHistory
from experiments.load.swarm import Credential
from experiments.seed_old_messages import seed_conversations

SERVICE_PORTS = {
    "mariadb": 3306,
    "redis": 6379,
    "rabbitmq": 5672,
    "mosquitto": 1883,
    "postgresql": 5432,
    "nats": 4222,
}
SETUP_OVERHEAD_S = 15.0  # server start, registration, connects: for the time-left estimate before a run ends


def check_services(names: Sequence[str]) -> None:
    """Every shared service a cell needs must answer on its port, or the run stops before starting anything."""
    down = []
    for name in names:
        try:
            socket.create_connection(("127.0.0.1", SERVICE_PORTS[name]), timeout=1.0).close()
        except OSError:
            down.append(f"{name} (127.0.0.1:{SERVICE_PORTS[name]})")
    if down:
        raise ExperimentError(
            "services this experiment needs are not reachable: " + ", ".join(down) + "; start them "
            "(see the README's service commands) or run only the cells that do not need them (--cell NAME)"
        )


async def _old_history(
    node: ServerProcess, creds: list[Credential], spec: OldHistory, say: Callable[[str], None]
) -> dict[str, Any]:
    """``population.history``: old messages in every conversation (sent by a member), then, with tiering on, the
    tier job as an operator runs it (``wsim tier``), so history reads meet hot, warm and cold pages."""
    senders: dict[str, int] = {}
    for c in creds:
        for conv in (*c.directs, *c.groups):
            senders.setdefault(conv, int(c.user_id))
    t0 = time.monotonic()
    stored = await seed_conversations(
        str(node.config_path), senders, spec.messages_per_conversation, spec.oldest_days
    )
    out: dict[str, Any] = {"conversations": len(senders), "stored": stored, "seed_s": time.monotonic() - t0}
    say(f"{stored} old messages in {len(senders)} conversations in {out['seed_s']:.1f} s")
    if node.resolved.strategies.store.tiering.enabled:
        t1 = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "core.cli", "tier", "--config", str(node.config_path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await proc.communicate()
        if proc.returncode != 0:
            raise ExperimentError(
                f"wsim tier failed ({proc.returncode}): {stderr.decode(errors='replace')[-2000:]}"
            )
        out["tier_job"] = json.loads(stdout.decode().strip().splitlines()[-1])
        out["tier_s"] = time.monotonic() - t1
        say(f"tier job: {out['tier_job']} in {out['tier_s']:.1f} s")
    return out


def membership(creds: list[Credential]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for c in creds:
        for conv in [*c.directs, *c.groups]:
            out.setdefault(conv, []).append(c.idx)
    return out


def estimate_run_s(exp: Experiment) -> float:
    return (
        SETUP_OVERHEAD_S
        + exp.population.clients / exp.population.connect_rate_per_s
        + exp.workload.duration_s
    )


class _Proxy:
    def __init__(self, exp: Experiment, target_port: int, workdir: Path, sources: list[str]) -> None:
        assert exp.proxy is not None
        self.cfg = exp.proxy
        self.target_port = target_port
        self.stats_file = workdir / "proxy.json"
        self.sources = sources
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "experiments.faults.proxy", "--target-port", str(self.target_port),
            "--config", self.cfg.model_dump_json(), "--stats-file", str(self.stats_file),
            "--sources", ",".join(self.sources), stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        if not line:
            raise ExperimentError("the fault proxy did not start")
        self.port = int(json.loads(line)["listening"])

    async def stop(self) -> dict[str, Any]:
        if self.proc is None:
            return {}
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        stats: dict[str, Any] = json.loads(self.stats_file.read_text()) if self.stats_file.exists() else {}
        return stats


async def _server_fault(
    fault: NodeKillFault | BackendRestartFault,
    t0_ns: int,
    nodes: list[ServerProcess],
    backends: dict[str, PrivateBackend],
    windows: list[tuple[int, int]],
    log: list[dict[str, Any]],
) -> None:
    await asyncio.sleep(max(0.0, (t0_ns - time.time_ns()) / 1e9 + fault.at_s))
    start = time.time_ns()
    if isinstance(fault, NodeKillFault):
        node = nodes[fault.node]
        await node.kill(fault.signal)
        await asyncio.sleep(fault.down_s)
        await node.restart()
    else:
        backend = backends[fault.backend]
        await backend.stop_part(fault.part)
        await asyncio.sleep(fault.down_s)
        await backend.start_part(fault.part)
    end = time.time_ns()
    windows.append((start, end + 5_000_000_000))  # disconnects up to 5 s after recovery are the fault's
    log.append({"type": fault.type, "start_ns": start, "end_ns": end})


def backend_cpu(backends: dict[str, PrivateBackend]) -> dict[str, tuple[int, float]]:
    """CPU seconds (user + system, children included) of every private backend process so far, keyed
    ``<backend>_<part>``, with its pid (a process restarted in between is counted from its restart)."""
    out: dict[str, tuple[int, float]] = {}
    for name, b in backends.items():
        for part, pid in b.pids().items():
            try:
                proc = psutil.Process(pid)
                procs = [proc, *proc.children(recursive=True)]
                out[f"{name}_{part}"] = (pid, sum(sum(p.cpu_times()[:2]) for p in procs))
            except psutil.Error:
                continue
    return out


def backend_cpu_figures(marks: list[tuple[int, dict[str, tuple[int, float]]]]) -> dict[str, dict[str, Any]]:
    """``backend_<name>_<part>_cpu_s`` between the first and the last mark ((time_ns, :func:`backend_cpu`): the
    load window), and the same as a share of one core (``..._cpu_percent``)."""
    if len(marks) < 2:
        return {}
    out: dict[str, dict[str, Any]] = {}
    (t_first, first), (t_last, last) = marks[0], marks[-1]
    duration_s = (t_last - t_first) / 1e9
    for key, (pid, cpu) in last.items():
        before = first.get(key)
        used = cpu - before[1] if before is not None and before[0] == pid else cpu
        out[f"backend_{key}_cpu_s"] = m.figure(used, 1)
        out[f"backend_{key}_cpu_percent"] = m.figure(100.0 * used / duration_s if duration_s > 0 else None, 1)
    return out


def _read_ledgers(directory: Path) -> dict[str, pd.DataFrame]:
    frames: dict[str, list[pd.DataFrame]] = {
        name: [pd.read_parquet(p) for p in sorted(directory.glob(f"*.{name}.parquet"))]
        for name in ("sends", "receives", "events", "arrivals", "history", "rest")
    }
    return {k: pd.concat(v, ignore_index=True) if v else pd.DataFrame() for k, v in frames.items()}


async def run_one(
    cell: Cell, rep: int, out: Path, say: Callable[[str], None], target: Target | None = None
) -> dict[str, Any]:
    """One repetition of one cell; returns its metrics ({name: {value, n}}) and leaves raw data in ``out``.

    With a ``target`` nothing is started: the population and the load go to the external deployment."""
    exp = cell.experiment
    if target is None:
        check_services(list(exp.services))
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    seed = exp.seed * 1000 + rep
    with tempfile.TemporaryDirectory(prefix="wsim-exp-") as tmp_s:
        tmp = Path(tmp_s)
        backends: dict[str, PrivateBackend] = {}
        nodes: list[ServerProcess] = []
        proxy: _Proxy | None = None
        pool: WorkerPool | None = None
        try:
            for name in exp.backends if target is None else ():
                backend = backends[name] = make_backend(name, tmp / "backends" / name, exp.backends[name])
                await backend.start()
            urls = {
                f"backend.{k}.{key}": v for k, b in backends.items() for key, v in b.placeholders().items()
            }
            urls["run.id"] = f"{seed:x}{time.time_ns() % 0xFFFFFF:06x}"
            settings = deep_merge(base_server(), substitute(exp.server, urls))
            # The nodes of a cluster share the data directory (the SQLite files, the JWT secret), as `wsim cluster`
            # does; the first node creates the schema and the secret before the others start.
            settings = deep_merge(settings, {"server": {"data_dir": str(tmp / "data")}})
            for i in range(exp.cluster.nodes if target is None else 0):
                node = ServerProcess(settings, tmp / f"node{i}", f"node-{i + 1}")
                nodes.append(node)
                await node.start()
            addrs = source_addresses(exp.population.clients, exp.population.source_addresses)
            if target is None:
                rest_url, ws_urls = nodes[0].url, [n.ws_url for n in nodes]
                # every local node's /metrics (a node in a kill window has none: that raises, as before)
                scrape_urls = [n.url for n in nodes]
                prefix = f"r{rep}"
            else:
                rest_url, ws_urls, scrape_urls = target.rest_url, target.ws_urls, target.urls
                # the deployment outlives the run: user names must not collide with an earlier run's
                prefix = f"x{secrets.token_hex(3)}r{rep}"

            cpu_marks: list[tuple[int, dict[str, tuple[int, float]]]] = []

            async def scrape_all() -> list[str]:
                """/metrics of every node, and a mark of the private backends' CPU (the first and the last
                scrape bound the load window)."""
                cpu_marks.append((time.time_ns(), backend_cpu(backends)))
                if target is None:
                    return [await n.metrics_text() for n in nodes]
                return [await target.scrape(u) for u in scrape_urls]

            ws_url = ws_urls[0]
            if exp.proxy is not None and exp.proxy.enabled:
                proxy = _Proxy(exp, nodes[0].port, out, addrs)
                await proxy.start()
                ws_url = f"ws://127.0.0.1:{proxy.port}/ws"
                ws_urls = [ws_url]
            creds = await prepare_population(rest_url, exp.population, prefix=prefix, progress=say)
            workload = exp.workload.model_copy()
            old_history: dict[str, Any] | None = None
            if exp.population.history is not None:
                old_history = await _old_history(nodes[0], creds, exp.population.history, say)
                if workload.history_span == 0:
                    workload.history_span = exp.population.history.messages_per_conversation
            if proxy is not None and exp.proxy is not None and exp.proxy.stall_rate_per_s > 0:
                workload.drain_quiet_s = max(workload.drain_quiet_s, exp.proxy.stall_ms / 1000 + 1.0)
            members = membership(creds)
            fault_windows: list[tuple[int, int]] = []
            fault_log: list[dict[str, Any]] = []
            server_tasks: list[asyncio.Task[None]] = []

            def start_server_faults(t0: int) -> None:
                server_tasks.extend(
                    asyncio.create_task(_server_fault(f, t0, nodes, backends, fault_windows, fault_log))
                    for f in exp.faults
                    if isinstance(f, (NodeKillFault, BackendRestartFault))
                )

            if exp.driver == "locust":
                from experiments.load.locust_driver import run_locust

                async def scrape_first() -> str:
                    return (await scrape_all())[0]

                driver_stats, before_one, after_one, t0 = await run_locust(
                    exp, creds, scrape_first, ws_url, out, seed, start_server_faults
                )
                before, after = [before_one], [after_one]
                for t in server_tasks:
                    await t
            else:
                pool = WorkerPool(exp.population.workers, tmp / "workers")
                await pool.start()
                await pool.setup(ws_urls, creds, addrs, workload.model_dump(), seed)
                conns = await pool.call(
                    lambda _: {
                        "cmd": "connect",
                        "rate_per_s": exp.population.connect_rate_per_s / exp.population.workers,
                        "timeout_s": 300,
                    }
                )
                connected = sum(c["connected"] for c in conns)
                say(f"{connected}/{exp.population.clients} connected")
                before = await scrape_all()
                t0 = time.time_ns() + 1_000_000_000
                client_faults = [f.model_dump() for f in exp.faults if f.type in CLIENT_FAULT_TYPES]
                start_server_faults(t0)
                runs = await pool.call(
                    lambda i: {
                        "cmd": "run",
                        "start_at_ns": t0,
                        "faults": client_faults,
                        "seed": seed * 100 + i,
                    }
                )
                for t in server_tasks:
                    await t
                after = await scrape_all()
                dumps = await pool.call(lambda i: {"cmd": "dump", "dir": str(out), "prefix": f"w{i}"})
                driver_stats = {
                    "connected": connected,
                    "runs": runs,
                    "workers": [d["stats"] for d in dumps],
                }
            driver_stats["faults"] = fault_log
            driver_stats["backend_cpu"] = backend_cpu_figures(cpu_marks)
            if old_history is not None:
                driver_stats["old_history"] = old_history
            end_ns = time.time_ns()
        finally:
            if pool is not None:
                await pool.close()
            proxy_stats = await proxy.stop() if proxy is not None else {}
            for i, node in enumerate(nodes):
                await node.stop()
                with contextlib.suppress(OSError):
                    log_name = "server.log" if len(nodes) == 1 else f"server-node{i + 1}.log"
                    (out / log_name).write_bytes(node.log_path.read_bytes()[-200_000:])
            for b in backends.values():
                await b.stop()
        tiering = cell.settings.strategies.store.tiering
        return _collect(
            exp, out, members, nodes, driver_stats, proxy_stats, (before, after), end_ns, fault_windows,
            (tiering.hot_days, tiering.warm_days),
        )  # fmt: skip


def _collect(
    exp: Experiment,
    out: Path,
    members: dict[str, list[int]],
    nodes: list[ServerProcess],
    driver_stats: dict[str, Any],
    proxy_stats: dict[str, Any],
    scrapes: tuple[list[str], list[str]],
    end_ns: int,
    fault_windows: list[tuple[int, int]],
    tier_days: tuple[float, float],
) -> dict[str, Any]:
    """Read the ledgers back, compute every metric, write the repetition's files."""
    books = _read_ledgers(out)
    sends, receives, events = books["sends"], books["receives"], books["events"]
    figures = m.compute_all(
        sends, receives, events, members, duration_s=exp.workload.duration_s, end_ns=end_ns,
        fault_windows=fault_windows, arrivals=books["arrivals"], history=books["history"], tier_days=tier_days,
        rest=books["rest"],
    )  # fmt: skip
    pairs = [(b, a) for b, a in zip(*scrapes, strict=True) if b and a]  # "" = a target's unreachable /metrics
    if pairs:
        figures.update(m.server_metrics([b for b, _ in pairs], [a for _, a in pairs]))
    driver_stats["metrics_scraped"] = f"{len(pairs)}/{len(scrapes[1])}"
    figures.update(
        m.resources(
            [s.cpu_percent for n in nodes for s in n.samples], [s.rss_bytes for n in nodes for s in n.samples]
        )
    )
    if exp.driver == "locust":
        # measured, not assumed: the clients that authenticated and finished their first sync
        driver_stats["connected"] = connected_clients(events)
        figures.update(locust_figures(out / "locust_stats.csv"))
    figures.update(driver_stats.get("backend_cpu", {}))
    figures["connected"] = m.figure(float(driver_stats.get("connected", 0)), exp.population.clients)
    for k, v in proxy_stats.items():
        figures[f"proxy_{k}"] = m.figure(float(v), int(proxy_stats.get("connections", 0)))
    (out / "metrics.json").write_text(json.dumps(figures, indent=1), encoding="utf-8")
    (out / "driver.json").write_text(json.dumps(driver_stats, indent=1, default=str), encoding="utf-8")
    (out / "membership.json").write_text(json.dumps(members), encoding="utf-8")
    if not exp.keep_ledgers:
        for p in out.glob("*.parquet"):
            p.unlink()
    elif exp.ledger_sample < 1:
        sample_ledgers(out, exp.ledger_sample)
    return figures


def sample_ledgers(directory: Path, share: float) -> int:
    """Keep only the rows of every ``round(1 / share)``-th client in the Parquet ledgers (after the metrics were
    computed from all of them); returns the step. Writes ``ledger_sample.json`` so readers know."""
    step = max(1, round(1 / share))
    for path in directory.glob("*.parquet"):
        table = pd.read_parquet(path)
        if "client" in table.columns:
            table[table["client"] % step == 0].to_parquet(
                path, compression="zstd", compression_level=9, index=False
            )
    (directory / "ledger_sample.json").write_text(
        json.dumps({"share": share, "kept": f"clients whose index % {step} == 0"}), encoding="utf-8"
    )
    return step


def connected_clients(events: pd.DataFrame) -> int:
    """Clients with a first successful connection (authenticated and synced) in the ledger's events."""
    if events.empty:
        return 0
    return int(events.loc[events["event"] == "connected", "client"].nunique())


async def run_experiment(
    exp: Experiment,
    raw: dict[str, Any],
    reports: Path,
    command: list[str],
    *,
    progress: bool = True,
    only: list[str] | None = None,
    targets: list[str] | None = None,
) -> Path:
    """Run every cell ``exp.repetitions`` times; returns the result folder.

    ``targets`` (``--target`` values) drive external deployments instead of starting nodes (see target.py)."""
    from tqdm import tqdm

    cells = select_cells(expand(exp, raw), only)
    assigned = assign_targets(cells, parse_targets(targets)) if targets else {}
    out = environment.run_dir(reports, exp.name)
    meta = environment.metadata()
    meta["command"] = command
    meta["started"] = meta.pop("utc")
    meta["cells_selected"] = [c.name for c in cells]
    meta["driver"] = {c.name: c.experiment.driver for c in cells}
    if assigned:
        meta["target"] = {
            "cells": {name: t.urls for name, t in assigned.items()},
            "note": "external deployment: the cells' server settings and backends were not applied; the "
            "target ran its own configuration",
        }
    stand_ins = stand_in_notes(cells, assigned)
    if stand_ins:
        meta["stand_ins"] = stand_ins
    environment.save_diff(out)
    results.write_resolved(out, exp, cells, command)
    runs = [(c, r) for c in cells for r in range(exp.repetitions)]
    per_run = [estimate_run_s(c.experiment) for c, _ in runs]
    collected: dict[str, list[dict[str, Any]]] = {c.name: [] for c in cells}
    bar = tqdm(total=round(sum(per_run)), unit="s", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    failures: list[str] = []
    try:
        for i, (cell, rep) in enumerate(runs):
            bar.set_description(
                f"{exp.name} [{i + 1}/{len(runs)}] cell {cell.name} rep {rep + 1}/{exp.repetitions}"
            )
            t = time.monotonic()

            def say(msg: str) -> None:
                bar.set_postfix_str(msg[:60])

            try:
                figs = await run_one(
                    cell, rep, out / "cells" / cell.name / f"rep{rep}", say, assigned.get(cell.name)
                )
                collected[cell.name].append(figs)
            except ExperimentError:
                raise
            except Exception as exc:
                failures.append(f"cell {cell.name} rep {rep}: {type(exc).__name__}: {exc}")
                bar.write(f"run failed: {failures[-1]}")
            took = time.monotonic() - t
            bar.update(round(per_run[i]))
            # Recalibrate the time left with what runs actually take here.
            ratio_ = took / per_run[i]
            remaining = sum(per_run[i + 1 :]) * ratio_
            bar.total = round(bar.n + remaining)
            bar.refresh()
    finally:
        bar.close()
    meta["finished"] = environment.metadata()["utc"]
    if assigned:
        unreachable = sorted({e for t in assigned.values() for e in t.metrics_errors})
        meta["target"]["metrics"] = "scraped" if not unreachable else "not reachable"
        meta["target"]["metrics_errors"] = unreachable
    meta["failures"] = failures
    (out / "metadata.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    summary = results.summarize(collected, cells)
    doc = {"experiment": exp.name, "question": exp.question, "repetitions": exp.repetitions, "cells": summary}
    (out / "summary.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False), encoding="utf-8")
    results.write_metrics_csv(out, collected)
    (out / "report.md").write_text(results.report_md(exp, summary, meta, out), encoding="utf-8")
    if failures:
        raise RuntimeError(f"{len(failures)} run(s) failed (see {out}/metadata.json): " + "; ".join(failures))
    return out


STAND_INS = {
    "mongo": "MongoDB here is nx-27017, a wire-protocol stand-in (MongoDB cannot run on this machine): it measures "
    "wsim's code path, not MongoDB; run the cell against the Compose stack (--target) for MongoDB itself",
}


def stand_in_notes(cells: list[Cell], assigned: dict[str, Any]) -> dict[str, str]:
    """Cells whose figures come from a stand-in rather than the real service (said in metadata and report)."""
    return {
        f"{c.name}": STAND_INS[b]
        for c in cells
        if c.name not in assigned
        for b in c.experiment.backends
        if b in STAND_INS
    }


def select_cells(cells: list[Cell], only: list[str] | None) -> list[Cell]:
    """The cells named by ``--cell`` (all when none is named); an unknown name lists the known ones."""
    if not only:
        return cells
    names = [c.name for c in cells]
    unknown = [n for n in only if n not in names]
    if unknown:
        raise ExperimentError(f"unknown cell(s) {', '.join(unknown)}; cells: {', '.join(names)}")
    return [c for c in cells if c.name in only]


def describe(
    exp: Experiment, raw: dict[str, Any], only: list[str] | None = None, targets: list[str] | None = None
) -> str:
    """The plan a --dry-run prints: cells, their strategy choices, repetitions and the estimated time."""
    cells = select_cells(expand(exp, raw), only)
    assigned = assign_targets(cells, parse_targets(targets)) if targets else {}
    total = sum(estimate_run_s(c.experiment) for c in cells) * exp.repetitions
    services = sorted({s for c in cells for s in c.experiment.services})
    lines = [
        f"experiment {exp.name}: {len(cells)} cell(s) x {exp.repetitions} repetition(s), about {total / 60:.1f} min",
    ]
    for c in cells:
        s = c.settings.strategies
        strat = ", ".join(
            f"{k}={getattr(s, k).kind}" for k in ("ack", "retry", "dedup", "cache", "bus") if hasattr(s, k)
        )
        strat += f", store={s.store.messages.kind}"
        e = c.experiment
        faults = ", ".join(f.type for f in e.faults) or "none"
        proxy = "proxy" if e.proxy is not None and e.proxy.enabled else "direct"
        if c.name in assigned:
            strat = f"external target {', '.join(assigned[c.name].urls)} (its own configuration)"
        lines.append(
            f"  {c.name}: {strat}; {e.population.users} users x {e.population.devices_per_user} device(s), "
            f"{e.workload.duration_s:g} s, faults: {faults}, "
            f"{proxy}, driver {e.driver}"
        )
    if services and not assigned:
        check_services(services)
        lines.append(f"  services up: {', '.join(services)}")
    return "\n".join(lines)
