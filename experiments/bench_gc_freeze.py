"""What the connection freezer traps: cyclic garbage that a freeze put out of the collector's reach.

``core/gcpolicy.py`` freezes the collector's heap every ``server.gc_freeze_every_connections`` connections opened
(and settles generation 1 by a freeze). An object that is alive at a freeze and later becomes part of a garbage
cycle is never collected. This measures how much: a real node (uvicorn, real sockets) in this process, devices
that connect, chat and disconnect for several rounds, then ``gc.unfreeze()`` and one full collection, whose count
of unreachable objects is what the freezes (and the start-up freeze) had trapped plus whatever young garbage was
still waiting. Run it with the freezer off (``--every 0``: the start-up freeze only) beside a value to compare.

    python -m experiments.bench_gc_freeze --every 0 --every 20

The SDK clients run in the same process, so their garbage counts too; it is the same in every arm.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from core.sdk.client import WsimClient
from tests.support.server import running_server, settings_for_test


async def measure(every: int, pairs: int, rounds: int, messages: int) -> dict[str, Any]:
    overrides = {"server": {"gc_tuning": True, "gc_freeze_every_connections": every}}
    with tempfile.TemporaryDirectory() as data:
        async with running_server(settings_for_test(Path(data), overrides)) as srv:
            couples: list[tuple[WsimClient, WsimClient]] = []
            for i in range(pairs):
                a, b = WsimClient(srv.url), WsimClient(srv.url)
                await a.register(f"gca{i}", "password-123", "A")
                await b.register(f"gcb{i}", "password-123", "B")
                await a.befriend(b)
                couples.append((a, b))
            started = time.perf_counter()
            try:
                for rnd in range(rounds):
                    for a, b in couples:
                        await a.connect()
                        await b.connect()
                    for k in range(messages):
                        await asyncio.gather(
                            *(a.send(a.direct_conv(a.user_id, b.user_id), f"{rnd}-{k}") for a, b in couples)
                        )
                    for a, b in couples:
                        await a.disconnect()
                        await b.disconnect()
                    await asyncio.sleep(0.5)  # the server notices the closes
                freezer = srv.node.gc_freezer
                frozen = gc.get_freeze_count()
                gc.unfreeze()
                trapped = gc.collect()
                return {
                    "every": every,
                    "devices": 2 * pairs,
                    "connections": 2 * pairs * rounds,
                    "messages": pairs * rounds * messages,
                    "freezes": freezer.freezes if freezer is not None else 0,
                    "frozen_objects_at_end": frozen,
                    "unreachable_after_unfreeze": trapped,
                    "run_s": round(time.perf_counter() - started, 1),
                }
            finally:
                for a, b in couples:
                    await a.close()
                    await b.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--every", type=int, action="append", help="freeze every N connections (0: off); repeatable"
    )
    p.add_argument("--pairs", type=int, default=40, help="couples of devices that chat")
    p.add_argument("--rounds", type=int, default=4, help="connect, chat, disconnect this many times")
    p.add_argument("--messages", type=int, default=25, help="messages per device per round")
    args = p.parse_args()
    for every in args.every or [0, 20]:
        # one process per arm would be cleaner; one after the other in this process, each arm starts from a
        # full collection and an empty permanent generation
        gc.collect()
        print(json.dumps(asyncio.run(measure(every, args.pairs, args.rounds, args.messages))), flush=True)


if __name__ == "__main__":
    main()
