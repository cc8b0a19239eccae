"""A swarm worker process: ``python -m experiments.load.worker`` reads one JSON command per line on stdin and
answers one JSON line on stdout. The coordinator runs one or more of these so the client side uses its own
cores (the swarm's loop is single-threaded) and never shares a process with the server it measures.

Commands: ``setup`` (credentials, target, workload), ``connect``, ``run`` (workload + client faults from a
shared wall-clock start), ``stats``, ``dump`` (ledger to Parquet, histograms), ``close``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

import orjson
from pydantic import TypeAdapter

from experiments.load.ceiling import CeilingLoad
from experiments.load.spec import ClientFault, Workload
from experiments.load.swarm import Credential, Swarm

log = logging.getLogger(__name__)
_FAULTS: TypeAdapter[list[ClientFault]] = TypeAdapter(list[ClientFault])


class Worker:
    def __init__(self) -> None:
        self.swarm: Swarm | None = None
        self.ceiling: CeilingLoad | None = None

    async def handle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        name = cmd.get("cmd")
        if isinstance(name, str) and name.startswith("ceiling_"):
            return await self._ceiling(name, cmd)
        if name == "setup":
            creds = [Credential(**c) for c in cmd["clients"]]
            self.swarm = Swarm(
                cmd["ws_urls"],
                creds,
                list(cmd.get("source_addrs") or []),
                Workload.model_validate(cmd.get("workload") or {}),
                seed=int(cmd.get("seed", 0)),
            )
            return {"ok": True, "clients": len(creds), "pid": os.getpid()}
        swarm = self.swarm
        if swarm is None:
            return {"ok": False, "error": "setup first"}
        if name == "connect":
            limit = cmd.get("limit")
            result = await swarm.connect_all(
                float(cmd.get("rate_per_s", 1000)),
                float(cmd.get("timeout_s", 120)),
                None if limit is None else int(limit),
            )
            return {"ok": True, **result}
        if name == "workload":
            swarm.workload = Workload.model_validate(cmd["workload"])
            return {"ok": True}
        if name == "run":
            result = await swarm.run(
                int(cmd["start_at_ns"]),
                _FAULTS.validate_python(cmd.get("faults") or []),
                int(cmd.get("seed", 0)),
                cmd.get("senders"),
            )
            return {"ok": True, **result, "stats": swarm.snapshot()}
        if name == "stats":
            return {"ok": True, "stats": swarm.snapshot()}
        if name == "reset":
            swarm.reset_measurements()
            return {"ok": True}
        if name == "dump":
            files = swarm.ledger.write(Path(cmd["dir"]), cmd["prefix"]) if cmd.get("ledger", True) else {}
            return {
                "ok": True,
                "files": {k: str(v) for k, v in files.items()},
                "histograms": swarm.histograms(),
                "stats": swarm.snapshot(),
            }
        if name == "close":
            await swarm.close()
            return {"ok": True, "stats": swarm.snapshot()}
        return {"ok": False, "error": f"unknown command {name!r}"}

    async def _ceiling(self, name: str, cmd: dict[str, Any]) -> dict[str, Any]:
        """The same-stack ceiling's load (experiments/load/ceiling.py): connect, run, close."""
        if name == "ceiling_connect":
            if self.ceiling is None:
                self.ceiling = CeilingLoad(int(cmd["worker"]), list(cmd.get("source_addrs") or []))
            return {"ok": True, **await self.ceiling.connect(cmd["name"], cmd["url"], int(cmd["count"]))}
        if self.ceiling is None:
            if name == "ceiling_close":
                return {"ok": True}  # nothing was connected
            return {"ok": False, "error": "ceiling_connect first"}
        if name == "ceiling_run":
            result = await self.ceiling.run(
                cmd["name"],
                int(cmd["senders"]),
                int(cmd["window"]),
                float(cmd["duration_s"]),
                int(cmd["start_at_ns"]),
                int(cmd.get("text_bytes", 48)),
            )
            return {"ok": True, **result}
        if name == "ceiling_close":
            await self.ceiling.close()
            self.ceiling = None
            return {"ok": True}
        return {"ok": False, "error": f"unknown command {name!r}"}


async def main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 30)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    worker = Worker()
    while True:
        line = await reader.readline()
        if not line:
            break
        try:
            answer = await worker.handle(orjson.loads(line))
        except Exception as exc:
            log.exception("command failed")
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(orjson.dumps(answer).decode() + "\n")
        sys.stdout.flush()
        if answer.get("ok") and line.startswith(b'{"cmd":"close"'):
            break


def run() -> None:
    logging.basicConfig(level=os.environ.get("WSIM_WORKER_LOG", "WARNING"), stream=sys.stderr)
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        asyncio.run(main())


if __name__ == "__main__":
    run()
