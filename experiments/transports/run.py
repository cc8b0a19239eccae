"""Transport comparison: the same chat load over each transport, at several user counts and message rates.

    python -m experiments.transports.run --transports websocket stomp long_poll short_poll mqtt \
        --users 20 100 --rates 20 100 --duration-s 20 --warmup-s 3 --repeat 3

For every cell (transport x users x rate x repetition) a fresh server process is started with every transport
enabled (MQTT on the local Mosquitto under a per-run topic prefix), ``users`` accounts are paired into direct
conversations, every user connects on the transport under test, and each user sends to its partner so that the
total is ``rate`` messages per second. Measured over the window after the warm-up:

* latency: receive time minus the send time the sender wrote into the message, same clock (one machine), per
  delivered message (p50, p99);
* requests and bytes per delivered message: what the devices put on and took off their sockets (see
  ``clients.py`` for exactly what is counted), both directions;
* server CPU: user+system CPU seconds of the server process (psutil), per delivered message and as utilisation;
  for MQTT the broker's CPU is recorded separately (``broker_cpu_s``): each MQTT cell runs its own Mosquitto
  (``--broker own``, with ``set_tcp_nodelay true`` unless ``--broker-nagle``);
* empty responses: poll responses that carried no frame (polling transports).

Raw results go to ``reports/transports/<UTC>-<git sha>/``: ``cells/<cell>.json`` (every latency sample and
counter), ``results.csv`` (one row per cell), ``summary.json`` (per transport/users/rate: medians over the
repetitions with ``n``), ``config.resolved.yaml`` and ``metadata.json``. ``notebooks/07_transports.ipynb`` reads
them and draws the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import datetime as dt
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import yaml

from experiments.harness import environment
from experiments.transports.clients import (
    TRANSPORT_KINDS,
    Account,
    Device,
    WireStats,
    make_device,
    server_transports,
)

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Cell:
    transport: str
    users: int
    rate_per_s: float
    repetition: int

    @property
    def name(self) -> str:
        return f"{self.transport}_u{self.users}_r{self.rate_per_s:g}_rep{self.repetition}"


@dataclass
class CellResult:
    cell: Cell
    window_s: float
    sent: int = 0
    delivered: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    wire: WireStats = field(default_factory=WireStats)
    server_cpu_s: float = 0.0
    broker_cpu_s: float | None = None
    send_errors: int = 0
    missing: int = 0  # sent in the window, never delivered by the end of the drain

    def row(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        d = max(1, self.delivered)
        return {
            "transport": self.cell.transport,
            "users": self.cell.users,
            "rate_per_s": self.cell.rate_per_s,
            "repetition": self.cell.repetition,
            "window_s": round(self.window_s, 3),
            "sent": self.sent,
            "delivered": self.delivered,
            "missing": self.missing,
            "send_errors": self.send_errors,
            "latency_p50_ms": _pct(lat, 0.50),
            "latency_p99_ms": _pct(lat, 0.99),
            "up_units_per_msg": self.wire.up_units / d,
            "down_units_per_msg": self.wire.down_units / d,
            "requests_per_msg": self.wire.requests / d,
            "bytes_per_msg": (self.wire.up_bytes + self.wire.down_bytes) / d,
            "up_bytes_per_msg": self.wire.up_bytes / d,
            "down_bytes_per_msg": self.wire.down_bytes / d,
            "empty_responses": self.wire.empty_responses,
            "empty_response_ratio": self.wire.empty_responses / self.wire.requests
            if self.wire.requests
            else 0.0,
            "server_cpu_s": round(self.server_cpu_s, 4),
            "server_cpu_util": self.server_cpu_s / self.window_s if self.window_s else 0.0,
            "server_cpu_ms_per_msg": 1000 * self.server_cpu_s / d,
            "broker_cpu_s": self.broker_cpu_s,
        }


def _pct(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return round(sorted_values[i], 3)


# ---------------------------------------------------------------------------------------------- server process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server_process(data_dir: Path, settings: dict[str, Any]) -> Any:
    """``wsim serve`` in its own process (its CPU is measured apart from the load)."""
    cfg = data_dir / "server.yaml"
    cfg.write_text(yaml.safe_dump(settings))
    log = (data_dir / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "serve", "--config", str(cfg)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if not k.startswith("WSIM_")},
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=url) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}; see its server.log")
            with contextlib.suppress(httpx.TransportError):
                if (await http.get("/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError("server did not become ready")


@contextlib.contextmanager
def own_broker(tmp: Path, nodelay: bool) -> Any:
    """A private Mosquitto for one cell: its CPU is this cell's alone, and Nagle's algorithm is configurable
    (``set_tcp_nodelay``; Mosquitto's default leaves Nagle on, which adds ~40 ms to small QoS 1 exchanges)."""
    port = free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"set_tcp_nodelay {'true' if nodelay else 'false'}\nmax_queued_messages 100000\n"
    )
    proc = subprocess.Popen(
        ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("mosquitto did not start")
            time.sleep(0.05)
        yield port, psutil.Process(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


def cpu_seconds(p: psutil.Process | None) -> float | None:
    if p is None:
        return None
    try:
        t = p.cpu_times()
    except psutil.Error:
        return None
    return float(t.user + t.system)


# ---------------------------------------------------------------------------------------------- load


async def make_accounts(url: str, n: int) -> list[Account]:
    run = secrets.token_hex(3)
    accounts: list[Account] = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        for i in range(n):
            r = await http.post(
                "/api/auth/register", json={"username": f"t{run}u{i}", "password": "password-123"}
            )
            r.raise_for_status()
            body = r.json()
            accounts.append(Account(str(body["user"]["id"]), body["access_token"]))
        for a, b in zip(accounts[0::2], accounts[1::2], strict=True):
            h = {"Authorization": f"Bearer {a.token}"}
            req = (await http.post("/api/friends/requests", json={"user_id": b.user_id}, headers=h)).json()
            if req.get("status") == "pending":
                await http.post(
                    f"/api/friends/requests/{req['id']}/accept",
                    headers={"Authorization": f"Bearer {b.token}"},
                )
    return accounts


def conv_of(a: Account, b: Account) -> str:
    lo, hi = sorted((int(a.user_id), int(b.user_id)))
    return f"d:{lo}:{hi}"


async def run_cell(cell: Cell, args: argparse.Namespace, out_dir: Path) -> CellResult:
    prefix = f"wsimx_{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="wsim-transports-") as tmp, contextlib.ExitStack() as stack:
        port = free_port()
        transports = server_transports(prefix)
        broker: psutil.Process | None = None
        if cell.transport == "mqtt" and args.broker == "own":
            broker_port, broker = stack.enter_context(own_broker(Path(tmp), not args.broker_nagle))
            for t in transports:
                if t["kind"] == "mqtt":
                    t["port"] = broker_port
        settings = {
            "server": {"port": port, "data_dir": tmp, "log_level": "warning", "gc_tuning": True},
            "auth": {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1},
            "limits": {"rate_per_s": 1000, "rate_burst": 2000, "max_connections_per_user": 10},
            "strategies": {"transports": transports},
        }
        with server_process(Path(tmp), settings) as proc:
            url = f"http://127.0.0.1:{port}"
            await wait_ready(url, proc)
            accounts = await make_accounts(url, cell.users)
            devices = [
                make_device(cell.transport, url, acc, short_interval_s=args.short_interval_s)
                for acc in accounts
            ]
            try:
                for chunk in range(0, len(devices), 50):
                    await asyncio.gather(*(d.open() for d in devices[chunk : chunk + 50]))
                for d in devices:  # open() returns synced: drop the history its first sync released
                    d.discard_messages()
                return await _measure(cell, args, devices, accounts, proc, broker)
            finally:
                await asyncio.gather(*(d.close() for d in devices), return_exceptions=True)


async def _measure(
    cell: Cell,
    args: argparse.Namespace,
    devices: list[Device],
    accounts: list[Account],
    proc: subprocess.Popen[bytes],
    broker: psutil.Process | None,
) -> CellResult:
    partner = {i: i + 1 if i % 2 == 0 else i - 1 for i in range(len(devices))}
    per_user_rate = cell.rate_per_s / len(devices)
    window: dict[str, float] = {}
    sent_in_window: set[str] = set()
    received: set[str] = set()
    all_arrived = asyncio.Event()
    result = CellResult(cell, 0.0)
    stop = asyncio.Event()

    async def sender(i: int) -> None:
        dev, conv = devices[i], conv_of(accounts[i], accounts[partner[i]])
        rng = random.Random(i)
        await asyncio.sleep(rng.random() / per_user_rate)
        n = 0
        while not stop.is_set():
            n += 1
            text = f"{time.time_ns()} {i}:{n}"
            in_window = "start" in window and "end" not in window
            try:
                await dev.send(conv, text, cmid=f"{dev.account.device}-{n}", timeout=30)
                if in_window:
                    result.sent += 1
                    sent_in_window.add(f"{i}:{n}")
            except Exception:
                if in_window:
                    result.send_errors += 1
            await asyncio.sleep(rng.expovariate(per_user_rate))

    async def receiver(i: int) -> None:
        dev = devices[i]
        while True:
            msg = await dev.messages.get()
            text = msg.get("body", {}).get("text", "")
            sent_ns, _, key = text.partition(" ")
            if not sent_ns.isdigit():
                continue
            rx = msg["_rx_ns"]
            if (
                "start" in window
                and window["start"] <= rx / 1e9
                and ("end" not in window or rx / 1e9 <= window["end"])
            ):
                result.latencies_ms.append((rx - int(sent_ns)) / 1e6)
                result.delivered += 1
            received.add(key)
            if stop.is_set() and sent_in_window <= received:
                all_arrived.set()

    server = psutil.Process(proc.pid)
    tasks = [asyncio.create_task(sender(i)) for i in range(len(devices))]
    tasks += [asyncio.create_task(receiver(i)) for i in range(len(devices))]
    await asyncio.sleep(args.warmup_s)
    before = [asdict(d.stats) for d in devices]
    cpu0, broker0 = cpu_seconds(server), cpu_seconds(broker)
    window["start"] = time.time()
    t0 = time.monotonic()
    await asyncio.sleep(args.duration_s)
    window["end"] = time.time()
    result.window_s = time.monotonic() - t0
    cpu1, broker1 = cpu_seconds(server), cpu_seconds(broker)
    for d, b in zip(devices, before, strict=True):
        now = asdict(d.stats)
        result.wire.add(WireStats(**{k: now[k] - b[k] for k in now}))
    stop.set()
    # drain: whatever was sent in the window must still arrive (counted as missing otherwise)
    if not sent_in_window <= received:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_arrived.wait(), args.drain_s)
    result.missing = len(sent_in_window - received)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    result.server_cpu_s = (cpu1 or 0.0) - (cpu0 or 0.0)
    if broker0 is not None and broker1 is not None:
        result.broker_cpu_s = broker1 - broker0
    return result


# ---------------------------------------------------------------------------------------------- output


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    groups: dict[tuple[str, int, float], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["transport"], r["users"], r["rate_per_s"]), []).append(r)
    metrics = [
        "latency_p50_ms",
        "latency_p99_ms",
        "requests_per_msg",
        "up_units_per_msg",
        "bytes_per_msg",
        "server_cpu_ms_per_msg",
        "server_cpu_util",
        "empty_response_ratio",
    ]
    cells = []
    for (transport, users, rate), rs in sorted(groups.items()):
        entry: dict[str, Any] = {
            "transport": transport,
            "users": users,
            "rate_per_s": rate,
            "repetitions": len(rs),
            "delivered_n": [r["delivered"] for r in rs],
            "missing": sum(r["missing"] for r in rs),
        }
        for m in metrics:
            values = [r[m] for r in rs if r[m] is not None]
            entry[m] = {"median": statistics.median(values) if values else None, "n": len(values)}
        cells.append(entry)
    # ratios against the native WebSocket at the same users/rate
    base = {(c["users"], c["rate_per_s"]): c for c in cells if c["transport"] == "websocket"}
    for c in cells:
        b = base.get((c["users"], c["rate_per_s"]))
        if b is None:
            continue
        c["vs_websocket"] = {
            m: (c[m]["median"] / b[m]["median"])
            if c[m]["median"] is not None and b[m]["median"] not in (None, 0)
            else None
            for m in ("latency_p50_ms", "latency_p99_ms", "bytes_per_msg", "server_cpu_ms_per_msg")
        }
    return {
        "cells": cells,
        "note": "medians over repetitions; n = repetitions with a value (per-cell sample sizes in delivered_n)",
    }


async def main_async(args: argparse.Namespace) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out) / f"{stamp}-{environment.git_sha()}"
    (out / "cells").mkdir(parents=True, exist_ok=True)
    (out / "config.resolved.yaml").write_text(yaml.safe_dump(dict(vars(args))))
    meta = {
        **environment.metadata("transports"),
        "started": stamp,
        "argv": sys.argv,
        "mqtt_bytes": "computed from the MQTT 3.1.1 encoding of PUBLISH/PUBACK packets",
    }
    (out / "metadata.json").write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2))
    environment.save_diff(out)
    cells = [
        Cell(t, u, r, rep)
        for rep in range(args.repeat)
        for u in args.users
        for r in args.rates
        for t in args.transports
    ]
    rows = []
    for i, cell in enumerate(cells, 1):
        print(f"[{i}/{len(cells)}] {cell.name}", flush=True)
        res = await run_cell(cell, args, out)
        row = res.row()
        rows.append(row)
        (out / "cells" / f"{cell.name}.json").write_bytes(
            orjson.dumps({**row, "latencies_ms": res.latencies_ms, "wire": asdict(res.wire)})
        )
        print(
            f"    delivered={row['delivered']} missing={row['missing']} p50={row['latency_p50_ms']} ms "
            f"p99={row['latency_p99_ms']} ms bytes/msg={row['bytes_per_msg']:.0f} "
            f"req/msg={row['requests_per_msg']:.2f} cpu={row['server_cpu_util']:.2%}",
            flush=True,
        )
    with (out / "results.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / "summary.json").write_bytes(orjson.dumps(summarize(rows), option=orjson.OPT_INDENT_2))
    print(f"results in {out}")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--transports", nargs="+", default=list(TRANSPORT_KINDS), choices=TRANSPORT_KINDS)
    p.add_argument("--users", nargs="+", type=int, default=[20, 100], help="even numbers: users are paired")
    p.add_argument("--rates", nargs="+", type=float, default=[20, 100], help="total messages per second")
    p.add_argument("--duration-s", type=float, default=20.0)
    p.add_argument("--warmup-s", type=float, default=3.0)
    p.add_argument("--drain-s", type=float, default=10.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--short-interval-s", type=float, default=1.0, help="short polling: seconds between polls")
    p.add_argument(
        "--broker",
        choices=["own", "shared"],
        default="own",
        help="MQTT: a private Mosquitto per cell (its CPU measured), or the shared one on 1883 (CPU not measured)",
    )
    p.add_argument(
        "--broker-nagle", action="store_true", help="own broker: leave Nagle on (Mosquitto's default)"
    )
    p.add_argument("--out", default=str(ROOT / "reports" / "transports"))
    args = p.parse_args(argv)
    if any(u < 2 or u % 2 for u in args.users):
        p.error("--users must be even numbers >= 2 (users are paired into conversations)")
    return args


def main(argv: list[str] | None = None) -> int:
    asyncio.run(main_async(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
