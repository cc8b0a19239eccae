"""Several nodes may share one SQLite file (a local cluster): sequence numbers must still never repeat."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

from core.clock import SystemClock
from core.metrics import Metrics
from core.models import MessageDraft, MessageKind
from strategies.context import StrategyContext
from strategies.store.config import SqliteStoreConfig
from strategies.store.sqlite import SqliteMessageStore


async def test_two_writers_on_one_file_allocate_disjoint_contiguous_seqs(tmp_path: Path) -> None:
    cfg = SqliteStoreConfig(path=str(tmp_path / "shared.db"))
    stores = [
        SqliteMessageStore(cfg, StrategyContext(SystemClock(), Metrics(), tmp_path, f"n{i}"))
        for i in range(2)
    ]
    for s in stores:
        await s.start()
    ids = itertools.count(1)

    async def writer(store: SqliteMessageStore, w: int) -> list[int]:
        seqs = []
        for i in range(150):
            d = MessageDraft(
                next(ids), "g:7", w, f"dev{w}", f"{w}-{i}", MessageKind.TEXT, {"text": "x"}, 0, f"{w}:{i}"
            )
            seqs.append((await store.append(d)).message.seq)
        return seqs

    try:
        results = await asyncio.gather(*(writer(stores[w % 2], w) for w in range(6)))
        all_seqs = sorted(s for r in results for s in r)
        assert all_seqs == list(range(1, 901))
        for r in results:
            assert r == sorted(r)  # one writer's messages keep their order
        # a resend through the other store is recognised as the same message
        again = await stores[1].append(
            MessageDraft(next(ids), "g:7", 0, "dev0", "0-0", MessageKind.TEXT, {"text": "x"}, 0, "0:0")
        )
        assert not again.created and again.message.seq == results[0][0]
        heads = await stores[0].heads(["g:7"])
        assert heads["g:7"].last_seq == 900
    finally:
        for s in stores:
            await s.close()
