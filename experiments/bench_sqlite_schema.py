"""What each index and each way of batching costs a SQLite commit, outside the server (CPU per message).

    python -m experiments.bench_sqlite_schema indexes      # batches of 16: 4 indexes, without each, PK only
    python -m experiments.bench_sqlite_schema statements   # random batch sizes 1-128: per-size, fixed-size, executemany

The message store's own schema (``MESSAGE_SCHEMA``), WAL, ``synchronous=NORMAL``, one thread, no event loop: it
isolates SQLite's side of the cost. Each variant runs ``--repeat`` times, interleaved; the printout is CPU us per
message (``time.process_time``) per run. docs/performance.md quotes it.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from strategies.store.sqlite.db import split_sql
from strategies.store.sqlite.schema import MESSAGE_SCHEMA

HEAD = "INSERT INTO messages (conv, seq, id, sender, device, cmid, kind, body, ts, dedup_key) VALUES "
ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
MARKS = (
    " ON CONFLICT(conv, user_id) DO UPDATE SET delivered = MAX(delivered, excluded.delivered), "
    "read = MAX(read, excluded.read)"
)
INDEXES = {
    "messages_id": "CREATE UNIQUE INDEX messages_id ON messages(id)",
    "messages_dedup": "CREATE UNIQUE INDEX messages_dedup ON messages(dedup_key) WHERE dedup_key IS NOT NULL",
    "messages_ts": "CREATE INDEX messages_ts ON messages(ts)",
    "marks_user": "CREATE INDEX marks_user ON marks(user_id)",
}
Rows = Sequence[tuple[Any, ...]]


def open_db(folder: Path, indexes: Sequence[str]) -> sqlite3.Connection:
    conn = sqlite3.connect(folder / "x.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    for script in MESSAGE_SCHEMA:
        for statement in split_sql(script):
            if "INDEX" not in statement.upper():
                conn.execute(statement)
    for name in indexes:
        conn.execute(INDEXES[name])
    return conn


def per_size(conn: sqlite3.Connection, rows: Rows) -> None:
    conn.execute(HEAD + ",".join([ROW] * len(rows)), [v for r in rows for v in r])


def fixed_size(conn: sqlite3.Connection, rows: Rows) -> None:
    i, n, size = 0, len(rows), 256
    while i < n:
        while size > n - i:
            size >>= 1
        conn.execute(HEAD + ",".join([ROW] * size), [v for r in rows[i : i + size] for v in r])
        i += size


JSON_INSERT = (
    "INSERT INTO messages (conv, seq, id, sender, device, cmid, kind, body, ts, dedup_key) SELECT value->>0, "
    "value->>1, value->>2, value->>3, value->>4, value->>5, value->>6, value->>7, value->>8, value->>9 "
    "FROM json_each(?)"
)


def json_rows(conn: sqlite3.Connection, rows: Rows) -> None:
    conn.execute(JSON_INSERT, (orjson.dumps(rows).decode(),))


def execute_many(conn: sqlite3.Connection, rows: Rows) -> None:
    conn.executemany(HEAD + ROW, rows)


def run(
    indexes: Sequence[str],
    insert: Callable[[sqlite3.Connection, Rows], None],
    batch: Callable[[], int],
    marks: bool,
) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        conn = open_db(Path(tmp), indexes)
        seqs: dict[str, int] = {}
        mid, done, total = 1 << 40, 0, 60_000
        start = time.process_time()
        while done < total:
            rows, mark_rows = [], []
            for j in range(batch()):
                w = (done + j) % 1000
                conv = f"d:{w}:{w + 1_000_000}"
                seq = seqs[conv] = seqs.get(conv, 0) + 1
                mid += 4096
                rows.append((conv, seq, mid, w, "dev", f"c{done + j}", "text", '{"text":"hello world"}',
                             1_700_000_000_000 + done, f"{w}:dev:c{done + j}"))  # fmt: skip
                mark_rows += [conv, w, seq, seq, conv, w + 1_000_000, seq, 0]
            conn.execute("BEGIN IMMEDIATE")
            insert(conn, rows)
            if marks:
                sql = "INSERT INTO marks (conv, user_id, delivered, read) VALUES "
                conn.execute(sql + ",".join(["(?, ?, ?, ?)"] * (len(mark_rows) // 4)) + MARKS, mark_rows)
            conn.execute("COMMIT")
            done += len(rows)
        cpu = time.process_time() - start
        conn.close()
        return cpu / done * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["indexes", "statements"])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    every = list(INDEXES)
    rnd = random.Random(1)
    variants: dict[
        str, tuple[Sequence[str], Callable[[sqlite3.Connection, Rows], None], Callable[[], int], bool]
    ]
    if args.what == "indexes":
        variants = {
            "4 indexes + marks": (every, per_size, lambda: 16, True),
            "without marks_user": ([i for i in every if i != "marks_user"], per_size, lambda: 16, True),
            "without messages_ts": ([i for i in every if i != "messages_ts"], per_size, lambda: 16, True),
            "3 indexes, no marks": ([i for i in every if i != "marks_user"], per_size, lambda: 16, False),
            "PK only + marks": ([], per_size, lambda: 16, True),
        }
    else:
        three = [i for i in every if i != "marks_user"]
        variants = {
            "statement per size": (three, per_size, lambda: rnd.randint(1, 128), False),
            "fixed sizes": (three, fixed_size, lambda: rnd.randint(1, 128), False),
            "executemany": (three, execute_many, lambda: rnd.randint(1, 128), False),
            "one JSON array": (three, json_rows, lambda: rnd.randint(1, 128), False),
        }
    results: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.repeat):
        for name, v in variants.items():
            results[name].append(run(*v))
    for name, values in results.items():
        print(f"{name:22s} " + " ".join(f"{x:6.1f}" for x in values) + "  us/msg")


if __name__ == "__main__":
    main()
