"""What message search costs the SQLite write path: writer-thread CPU per message of a group commit (50 messages)
without the search schema and with it (the commit only queues the id), and of the off-the-ack-path indexer
(``_index_pending``, 1,000 messages a batch). Thread CPU time, not wall time, so a busy machine inflates it less;
medians of ``--repeat`` runs, the arms interleaved. Not a test: it prints figures for docs/performance.md.

    python -m experiments.bench_search_index --repeat 5
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from core.models import MessageDraft, MessageKind
from strategies.store.sqlite import messages as store
from strategies.store.sqlite.db import split_sql
from strategies.store.sqlite.schema import MESSAGE_SCHEMA

BATCH = 50
INDEX_EVERY = 20  # commits: the indexer takes 1,000 messages at a time


def one_run(with_search: bool, texts: list[str], batches: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / "m.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        for script in MESSAGE_SCHEMA[: None if with_search else 2]:
            for statement in split_sql(script):
                conn.execute(statement)
        commit_us: list[float] = []
        index_us: list[float] = []
        i = 0
        for b in range(batches):
            drafts = []
            for _ in range(BATCH):
                i += 1
                text = texts[i % len(texts)]
                drafts.append(
                    MessageDraft(
                        i, f"g:{i % 200}", 1, "d", f"c{i}", MessageKind.TEXT, {"text": text}, i, f"k{i}"
                    )
                )
            t = time.thread_time()
            conn.execute("BEGIN IMMEDIATE")
            store.SqliteMessageStore._write_batch(conn, drafts, {})
            conn.execute("COMMIT")
            commit_us.append((time.thread_time() - t) / BATCH * 1e6)
            if with_search and b % INDEX_EVERY == INDEX_EVERY - 1:
                t = time.thread_time()
                conn.execute("BEGIN IMMEDIATE")
                n = store._index_pending(conn, 100_000)
                conn.execute("COMMIT")
                index_us.append((time.thread_time() - t) / n * 1e6)
        conn.close()
    return statistics.median(commit_us), statistics.median(index_us) if index_us else 0.0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--batches", type=int, default=300)
    args = ap.parse_args(argv)
    rnd = random.Random(1)
    hanzi = "我们今天天气很好去吃火锅吧明天下雨预报说消息群聊好友周末爬山见面"
    texts = [f"message {i} " + "x" * 40 for i in range(100)]
    texts += ["".join(rnd.choice(hanzi) for _ in range(30)) for _ in range(100)]
    plain, queued, indexer = [], [], []
    for rep in range(args.repeat):
        p, _ = one_run(False, texts, args.batches)
        q, x = one_run(True, texts, args.batches)
        plain.append(p)
        queued.append(q)
        indexer.append(x)
        print(
            f"[{rep}] commit without search {p:.1f} us/msg, with search {q:.1f} us/msg; indexer {x:.1f} us/msg"
        )
    print(
        f"median of {args.repeat}: commit without search {statistics.median(plain):.1f} us/msg, "
        f"with search (queue only) {statistics.median(queued):.1f} us/msg, "
        f"indexer off the ack path {statistics.median(indexer):.1f} us/msg"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
