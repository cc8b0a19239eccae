"""What one swarm device costs: CPU per handled frame and memory per idle (connected, synced) session.

The swarm (:mod:`experiments.load.swarm`) must stay cheap next to the server it loads. This drives
:class:`~experiments.load.swarm.SwarmClient` objects with prepared frames through a fake connection (no sockets,
no event loop work besides futures), so it measures the client's protocol code alone: parsing included,
WebSocket framing excluded. ``--against REV`` runs the same measurement on another revision of the tree (a
temporary ``git worktree``) in a subprocess and prints both side by side::

    python experiments/bench_client_session.py --against main --clients 2000 --pushes 50 --repeat 3

Numbers and the command that produced them: docs/performance.md ("Client session").
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # measure this tree, whatever else is installed


class _FakeProto:
    """Stands in for the swarm's ``_WsProtocol``: counts what the client writes."""

    opened = True

    def __init__(self) -> None:
        self.sent = 0

    def send(self, data: object) -> None:
        self.sent += 1

    def close(self, code: int = 1000) -> None:
        pass

    def abort(self) -> None:
        pass


def _frames(idx: int, pushes: int) -> tuple[list[bytes], list[bytes]]:
    """(hello: auth.ok, an empty sync; then ``pushes`` in-order message.new of another user in one direct)."""
    from experiments.load.swarm import text_for

    conv = f"d:{idx}:{idx + 1_000_000}"
    hello = [
        {"type": "auth.ok", "ack": "three_state", "heartbeat_s": 30, "node": "n1", "token_expires": 0},
        {"type": "sync.batch", "conv": conv, "messages": [], "last_seq": 0, "more": False},
        {"type": "sync.done", "more": False},
    ]
    now = time.time_ns()
    traffic = [
        {
            "type": "message.new",
            "msg": {
                "id": f"m{idx}-{seq}",
                "conv": conv,
                "seq": seq,
                "from": "peer",
                "device": "peer-d",
                "cmid": f"p-{seq}",
                "kind": "text",
                "ts": 0,
                "body": {"text": text_for(now, f"p-{seq}", 64)},
            },
        }
        for seq in range(1, pushes + 1)
    ]
    return [orjson.dumps(f) for f in hello], [orjson.dumps(f) for f in traffic]


async def _measure(clients: int, pushes: int) -> dict[str, float]:
    from experiments.load.swarm import Credential, Swarm, SwarmClient

    creds = [
        Credential(i, str(i), f"u{i}", "token", f"dev-{i}", directs=[f"d:{i}:{i + 1_000_000}"])
        for i in range(clients)
    ]
    frames = [_frames(i, pushes) for i in range(clients)]
    swarm = Swarm("ws://127.0.0.1:9/ws", [], [])  # its histograms and ledger are not per session
    loop = asyncio.get_running_loop()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    swarm.clients = [SwarmClient(swarm, cred, None) for cred in creds]
    for c, (hello, _) in zip(swarm.clients, frames, strict=True):
        c.want_online = True
        c.first_sync = loop.create_future()
        c.on_open(_FakeProto())  # type: ignore[arg-type]
        for data in hello:
            c.on_text(data)
    gc.collect()
    idle_bytes = (tracemalloc.get_traced_memory()[0] - before) / clients
    tracemalloc.stop()
    # CPU per frame: pushes (ordering, ledger, acks due), the ack flushes, and one send + its ack per client
    handled = 0
    t0 = time.process_time()
    for c, (_, traffic) in zip(swarm.clients, frames, strict=True):
        for data in traffic:
            c.on_text(data)
        handled += len(traffic)
    for c in swarm.clients:
        c.flush_acks()
    for c in swarm.clients:
        rec = c.new_send(c.cred.directs[0], False)
        sent = {
            "type": "message.sent",
            "cmid": rec.cmid,
            "conv": rec.conv,
            "seq": pushes + 1,
            "id": "x",
            "ts": 0,
        }
        c.on_text(orjson.dumps(sent))
        handled += 1
    cpu = time.process_time() - t0
    released = swarm.counters.released
    assert released == clients * pushes, f"released {released} of {clients * pushes}"
    return {"us_per_frame": cpu / handled * 1e6, "idle_bytes_per_session": idle_bytes}


def _run(clients: int, pushes: int, repeat: int) -> dict[str, float]:
    runs = [asyncio.run(_measure(clients, pushes)) for _ in range(repeat)]
    return {k: min(r[k] for r in runs) for k in runs[0]}


def _against(rev: str, argv: list[str]) -> dict[str, float]:
    """The same measurement on ``rev``: this script runs in a temporary worktree of that revision."""
    with tempfile.TemporaryDirectory(prefix="wsim-bench-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev], check=True,
                       capture_output=True)  # fmt: skip
        try:
            script = tree / "experiments" / "bench_client_session.py"
            script.write_bytes(Path(__file__).read_bytes())  # the old tree may predate this script
            env = {**os.environ, "PYTHONPATH": str(tree)}
            out = subprocess.run([sys.executable, str(script), *argv, "--json"], check=True, env=env,
                                 capture_output=True, text=True, cwd=tree).stdout  # fmt: skip
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    result: dict[str, float] = json.loads(out)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=2000)
    ap.add_argument("--pushes", type=int, default=50, help="message.new frames per client")
    ap.add_argument("--repeat", type=int, default=3, help="runs; the best of them is reported")
    ap.add_argument("--against", metavar="REV", help="also measure this git revision (e.g. main)")
    ap.add_argument("--json", action="store_true", help="print this tree's result as JSON only")
    args = ap.parse_args()
    argv = ["--clients", str(args.clients), "--pushes", str(args.pushes), "--repeat", str(args.repeat)]
    here = _run(args.clients, args.pushes, args.repeat)
    if args.json:
        print(json.dumps(here))
        return
    rows = [("this tree", here)]
    if args.against:
        rows.insert(0, (args.against, _against(args.against, argv)))
    print(f"{args.clients} clients x {args.pushes} pushes, best of {args.repeat}")
    print(f"{'tree':<12} {'CPU us/frame':>13} {'bytes/idle session':>19}")
    for name, r in rows:
        print(f"{name:<12} {r['us_per_frame']:>13.2f} {r['idle_bytes_per_session']:>19.0f}")


if __name__ == "__main__":
    main()
