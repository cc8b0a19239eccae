"""Hot / warm / cold tiering on every registered message store (hot and warm of the same kind, warm as a second
table/collection/file), with the local archive: reads page seamlessly across tiers, and the tier job interrupted at
any step and run again loses nothing and stores nothing twice."""

from __future__ import annotations

import contextlib
import gzip
import itertools
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter

from core.clock import FakeClock
from core.metrics import Metrics
from core.models import Message, MessageDraft, MessageKind
from strategies.context import StrategyContext
from strategies.store import ARCHIVES, MESSAGE_STORES
from strategies.store.archive import LocalArchive
from strategies.store.base import TierableStore
from strategies.store.config import ArchiveConfig, LocalArchiveConfig, MessageStoreConfig, TieringConfig
from strategies.store.tiered import DAY_MS, TieredMessageStore
from tests.support.stores import param_backend_config

_ids = itertools.count(5_000_000)
NOW = 1_800_000_000_000


def warm_variant(cfg: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    kind = cfg["kind"]
    if kind == "sqlite":
        return {**cfg, "path": str(tmp_path / "warm.db")}
    if kind == "mysql":
        return {**cfg, "table_prefix": "warm_"}
    if kind == "mongo":
        return {**cfg, "collection_prefix": "warm_"}
    raise AssertionError(f"no warm variant for store kind {kind!r}: add it to {__name__}")


class Tiers:
    def __init__(self, cfg: dict[str, Any], tmp_path: Path) -> None:
        self.cfg = cfg
        self.tmp_path = tmp_path
        self.clock = FakeClock(start_wall_ms=NOW)
        self.ctx = StrategyContext(self.clock, Metrics(), tmp_path, "test")
        self.tiering = TieringConfig(
            enabled=True, batch=7, cold=LocalArchiveConfig(path=str(tmp_path / "archive"))
        )
        self.store: TieredMessageStore | None = None

    async def open(self) -> TieredMessageStore:
        adapter = TypeAdapter(MessageStoreConfig)
        hot: Any = MESSAGE_STORES.create(adapter.validate_python(self.cfg), self.ctx)
        warm: Any = MESSAGE_STORES.create(
            adapter.validate_python(warm_variant(self.cfg, self.tmp_path)), self.ctx
        )
        archive = ARCHIVES.create(self.tiering.cold, self.ctx)
        self.store = TieredMessageStore(hot, warm, archive, self.tiering, self.ctx)
        await self.store.start()
        return self.store

    async def __aenter__(self) -> Tiers:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.store is not None:  # warm tables/collections live in the same namespace, dropped with it
            await self.store.close()


@pytest.fixture(params=MESSAGE_STORES.names())
async def tiers(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Tiers]:
    async with param_backend_config(request, tmp_path) as cfg, Tiers(cfg, tmp_path) as t:
        yield t


def draft(conv: str, age_days: float, text: str) -> MessageDraft:
    i = next(_ids)
    return MessageDraft(
        i,
        conv,
        7,
        "dev",
        f"c{i}",
        MessageKind.TEXT,
        {"text": text},
        NOW - int(age_days * DAY_MS),
        f"7:dev:c{i}",
    )


async def fill(store: TieredMessageStore, conv: str, n: int) -> list[Message]:
    """n messages from 200 days old to brand new, in seq order."""
    out = []
    for i in range(n):
        age = 200 * (n - 1 - i) / (n - 1)
        out.append((await store.append(draft(conv, age, f"{conv}#{i}"))).message)
    return out


async def everything(store: TieredMessageStore, conv: str) -> dict[str, list[int]]:
    hot = [m.seq for m in await store.hot.messages_after(conv, 0, 10_000)]
    warm = [m.seq for m in await store.warm.messages_after(conv, 0, 10_000)]
    cold: list[int] = []
    for obj in await store.cold.objects(conv):
        cold += [m.seq for m in await store.cold.read(obj)]
    return {"hot": hot, "warm": warm, "cold": cold}


def assert_each_once(where: dict[str, list[int]], n: int) -> None:
    allseqs = where["hot"] + where["warm"] + where["cold"]
    assert sorted(allseqs) == list(range(1, n + 1)), where


async def test_job_moves_by_age_and_reads_page_across_tiers(tiers: Tiers) -> None:
    store = await tiers.open()
    msgs = await fill(store, "d:1:2", 40)
    await fill(store, "g:3", 12)
    report = await store.run_tier_job()
    assert report.to_warm > 0 and report.to_cold > 0
    where = await everything(store, "d:1:2")
    assert_each_once(where, 40)
    by_seq = {m.seq: m for m in msgs}
    assert all(NOW - by_seq[s].ts_ms <= 7 * DAY_MS for s in where["hot"])
    assert all(7 * DAY_MS < NOW - by_seq[s].ts_ms <= 90 * DAY_MS for s in where["warm"])
    assert all(NOW - by_seq[s].ts_ms > 90 * DAY_MS for s in where["cold"])
    assert where["hot"] and where["warm"] and where["cold"]
    # newest-first paging (the history view) walks hot -> warm -> cold without holes or repeats
    seen: list[int] = []
    before = 2**53
    while True:
        page = await store.messages_before("d:1:2", before, 6)
        if not page:
            break
        assert [m.seq for m in page] == sorted(m.seq for m in page)
        seen = [m.seq for m in page] + seen
        before = page[0].seq
    assert seen == list(range(1, 41))
    assert [m.body["text"] for m in await store.messages_before("d:1:2", 4, 10)] == [
        "d:1:2#0",
        "d:1:2#1",
        "d:1:2#2",
    ]
    # oldest-first paging (a sync from cursor 0) walks cold -> warm -> hot
    seen = []
    after = 0
    while True:
        page = await store.messages_after("d:1:2", after, 9)
        if not page:
            break
        seen += [m.seq for m in page]
        after = page[-1].seq
    assert seen == list(range(1, 41))
    assert (await store.get_message(msgs[-1].id)) == msgs[-1]
    # the conversation keeps counting after its old messages left the hot store
    nxt = await store.append(draft("d:1:2", 0, "new"))
    assert nxt.message.seq == 41


async def test_heads_find_a_last_message_that_moved(tiers: Tiers) -> None:
    store = await tiers.open()
    for i in range(3):
        await store.append(draft("g:8", 30 - i, f"old{i}"))
    await store.run_tier_job()
    assert (await everything(store, "g:8"))["hot"] == []
    head = (await store.heads(["g:8"]))["g:8"]
    assert head.last_seq == 3 and head.last is not None and head.last.body == {"text": "old2"}


class InjectedCrashError(Exception):
    pass


async def test_interrupted_job_resumes_without_loss_or_duplicates(
    tiers: Tiers, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await tiers.open()
    n = 45
    await fill(store, "d:1:2", n)
    hot: TierableStore = store.hot
    warm: TierableStore = store.warm
    archive = store.archive
    # interrupt once at each step of each move: after the copy (before the delete), and in the middle of an archive
    failures = {"hot.delete": 2, "warm.delete": 2, "archive.put": 3}
    originals = {
        "hot.delete": hot.delete_messages,
        "warm.delete": warm.delete_messages,
        "archive.put": archive.put,
    }

    def failing(name: str) -> Any:
        async def wrapper(*args: Any) -> Any:
            failures[name] -= 1
            if failures[name] == 0:
                raise InjectedCrashError(name)
            return await originals[name](*args)

        return wrapper

    monkeypatch.setattr(hot, "delete_messages", failing("hot.delete"))
    monkeypatch.setattr(warm, "delete_messages", failing("warm.delete"))
    monkeypatch.setattr(archive, "put", failing("archive.put"))
    interruptions = 0
    for _ in range(10):
        try:
            await store.run_tier_job()
            break
        except InjectedCrashError:
            interruptions += 1
            # between runs every message is somewhere, and history still reads each one once
            page = await store.messages_after("d:1:2", 0, 1000)
            assert [m.seq for m in page] == list(range(1, n + 1))
    assert interruptions == 3
    where = await everything(store, "d:1:2")
    assert_each_once(where, n)
    report = await store.run_tier_job()  # nothing left to do
    assert (report.to_warm, report.to_cold) == (0, 0)


def run_module(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m module args`` as a user runs it, for the exit code and output."""
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, check=False)


def test_wsim_tier_command(tmp_path: Path) -> None:
    """The CLI runs the job on a configured deployment (embedded SQLite here) and reports what it moved."""
    cfg = tmp_path / "wsim.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "server": {"data_dir": str(tmp_path / "data")},
                "strategies": {"store": {"tiering": {"enabled": True}}},
            }
        )
    )
    done = run_module("core.cli", "tier", "-c", str(cfg))
    assert done.returncode == 0, done.stderr
    assert '"to_warm": 0' in done.stdout
    off = tmp_path / "off.yaml"
    off.write_text(yaml.safe_dump({"server": {"data_dir": str(tmp_path / "data")}}))
    done = run_module("core.cli", "tier", "-c", str(off))
    assert done.returncode == 2 and "tiering.enabled is false" in done.stderr


def test_seeded_old_messages_are_tiered_by_the_command(tmp_path: Path) -> None:
    """docs/database.md's recipe: experiments/seed_old_messages.py writes old messages, ``wsim tier`` moves them."""
    cfg = tmp_path / "wsim.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "server": {"data_dir": str(tmp_path / "data")},
                "strategies": {"store": {"tiering": {"enabled": True, "hot_days": 7, "warm_days": 90}}},
            }
        )
    )
    # ages k * 0.9995 days for k = 1..200: no message sits on a tier boundary
    done = run_module("experiments.seed_old_messages", "-c", str(cfg), "-n", "200", "--oldest-days", "199.9")
    assert done.returncode == 0 and "stored 200 messages" in done.stdout, done.stderr
    done = run_module("core.cli", "tier", "-c", str(cfg))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # 7 are younger than hot_days, 90 younger than warm_days: the rest moves on
    assert (report["to_warm"], report["to_cold"]) == (200 - 7, 200 - 90)


async def test_seeding_many_conversations_keeps_ids_unique_and_seqs_in_time(tmp_path: Path) -> None:
    """The experiments' population.history: conversations seeded together share timestamps, never ids."""
    from experiments.seed_old_messages import SEED_NODE_ID, seed_conversations
    from strategies.store import build_message_store
    from strategies.store.config import StoreConfig

    cfg = tmp_path / "wsim.yaml"
    cfg.write_text(yaml.safe_dump({"server": {"data_dir": str(tmp_path / "data")}}))
    convs = {f"d:{i}:{i + 100}": i for i in range(1, 6)}
    assert await seed_conversations(str(cfg), convs, 50, 10.0) == 250
    ctx = StrategyContext(FakeClock(), Metrics(), tmp_path / "data", "node-1")
    store = build_message_store(StoreConfig(), ctx)
    await store.start()
    try:
        ids: set[int] = set()
        for conv, sender in convs.items():
            page = await store.messages_after(conv, 0, 100)
            assert [m.seq for m in page] == list(range(1, 51))
            assert all(a.ts_ms < b.ts_ms for a, b in itertools.pairwise(page))
            assert {m.sender for m in page} == {sender}
            assert all((m.id >> 12) & 0x3FF == SEED_NODE_ID for m in page)
            ids.update(m.id for m in page)
        assert len(ids) == 250
    finally:
        await store.close()


@contextlib.contextmanager
def archive_config(kind: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The local archive in a tmp directory; S3 against moto's in-process S3 (the code path of a real bucket:
    boto3 client, paginated listing, NoSuchKey)."""
    if kind == "local":
        yield {"kind": "local", "path": str(tmp_path / "arch")}
    elif kind == "s3":
        import boto3
        from moto import mock_aws

        with mock_aws():
            boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="wsim-test")
            yield {"kind": "s3", "bucket": "wsim-test", "region": "us-east-1", "prefix": "t/"}
    else:
        raise AssertionError(f"no test config for archive kind {kind!r}: add it to {__name__}")


@pytest.mark.parametrize("kind", ARCHIVES.names())
async def test_archive_contract(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    with archive_config(kind, tmp_path) as cfg:
        ctx = StrategyContext(FakeClock(), Metrics(), tmp_path, "t")
        a = ARCHIVES.create(TypeAdapter(ArchiveConfig).validate_python(cfg), ctx)
        await a.start()
        try:
            await a.put("cold/aa/d:1:2/x.gz", b"one")
            await a.put("cold/aa/d:1:2/x.gz", b"two")
            await a.put("cold/bb/g:1/y.gz", b"three")
            assert await a.get("cold/aa/d:1:2/x.gz") == b"two"
            assert await a.get("cold/zz/none") is None
            assert await a.list("cold/aa/") == ["cold/aa/d:1:2/x.gz"]
            assert await a.list("cold/") == ["cold/aa/d:1:2/x.gz", "cold/bb/g:1/y.gz"]
            for i in range(1005):  # more than one listing page (S3 pages by 1000)
                await a.put(f"cold/cc/g:2/{i:04d}", b"")
            assert len(await a.list("cold/cc/")) == 1005
        finally:
            await a.close()
    if kind == "local":
        assert not list((tmp_path / "arch").rglob(".*.tmp"))
        local = LocalArchive(LocalArchiveConfig(path=str(tmp_path / "arch")), ctx)
        with pytest.raises(ValueError, match="escapes"):
            await local.put("../outside", b"x")


async def test_pages_stay_whole_when_timestamps_and_seqs_disagree(tiers: Tiers) -> None:
    """Seq 2 got an older timestamp than seq 1 and 3 (clock skew between nodes) and moves first: a hot page with
    a hole is completed from the warm tier, in both directions."""
    store = await tiers.open()
    for age in (1, 10, 1):
        await store.append(draft("d:4:5", age, f"age{age}"))
    await store.run_tier_job()
    assert (await everything(store, "d:4:5")) == {"hot": [1, 3], "warm": [2], "cold": []}
    assert [m.seq for m in await store.messages_after("d:4:5", 0, 10)] == [1, 2, 3]
    assert [m.seq for m in await store.messages_before("d:4:5", 4, 10)] == [1, 2, 3]
    assert [m.seq for m in await store.messages_before("d:4:5", 4, 2)] == [2, 3]


async def test_pages_reach_moved_messages_above_a_first_message_that_stayed(tiers: Tiers) -> None:
    """Seq 1 is the newest by time (a group's creation notice before imported history) and stays hot while seqs
    2-5 move: a page below a moved seq must not stop at seq 1 as if it were the whole conversation."""
    store = await tiers.open()
    for age in (1, 200, 150, 100, 50):
        await store.append(draft("d:6:7", age, f"age{age}"))
    await store.run_tier_job()
    assert (await everything(store, "d:6:7")) == {"hot": [1], "warm": [5], "cold": [2, 3, 4]}
    assert [m.seq for m in await store.messages_before("d:6:7", 4, 10)] == [1, 2, 3]
    assert [m.seq for m in await store.messages_before("d:6:7", 6, 2)] == [4, 5]
    assert [m.seq for m in await store.messages_before("d:6:7", 2**53, 10)] == [1, 2, 3, 4, 5]
    assert [m.seq for m in await store.messages_after("d:6:7", 0, 10)] == [1, 2, 3, 4, 5]
    assert [m.seq for m in await store.messages_after("d:6:7", 0, 2)] == [1, 2]


async def test_recall_hides_the_body_in_every_tier(tiers: Tiers) -> None:
    """A message recalled in the hot, the warm and the cold tier: gone from history (newest-first pages), from sync
    (oldest-first pages), from get_message (what the recall path reads first) and from the archive's bytes."""
    store = await tiers.open()
    msgs = await fill(store, "d:4:5", 30)
    await store.run_tier_job()
    where = await everything(store, "d:4:5")
    by_seq = {m.seq: m for m in msgs}
    picked = {tier: by_seq[where[tier][len(where[tier]) // 2]] for tier in ("hot", "warm", "cold")}
    for tier, m in picked.items():
        found = await store.get_message(m.id)  # the recall path finds the message first, in any tier
        assert found is not None and found.body == m.body, tier
        assert await store.mark_recalled(m.id), tier
        assert not await store.mark_recalled(m.id), tier  # a second recall changes nothing
    secrets = {m.body["text"] for m in picked.values()}
    history: list[Message] = []
    before = 2**53
    while page := await store.messages_before("d:4:5", before, 7):
        history = page + history
        before = page[0].seq
    sync: list[Message] = []
    after = 0
    while page := await store.messages_after("d:4:5", after, 7):
        sync += page
        after = page[-1].seq
    for view in (history, sync):
        assert [m.seq for m in view] == list(range(1, 31))
        hidden = {m.seq for m in view if m.recalled}
        assert hidden == {m.seq for m in picked.values()}
        assert all(m.body == {} for m in view if m.recalled)
        assert not secrets & {m.body.get("text") for m in view}
    for m in picked.values():
        got = await store.get_message(m.id)
        assert got is not None and got.recalled and got.body == {}
    archived = b"".join(
        gzip.decompress(p.read_bytes()) for p in (tiers.tmp_path / "archive").rglob("*.jsonl.gz")
    )
    assert picked["cold"].body["text"].encode() not in archived  # rewritten, not only masked
    assert all(by_seq[s].body["text"].encode() in archived for s in where["cold"] if s != picked["cold"].seq)
    # messages recalled in hot and warm are archived without their body when they move on
    tiers.clock.advance(100 * DAY_MS / 1000)
    await store.run_tier_job()
    assert sorted((await everything(store, "d:4:5"))["cold"]) == list(range(1, 31))
    archived = b"".join(
        gzip.decompress(p.read_bytes()) for p in (tiers.tmp_path / "archive").rglob("*.jsonl.gz")
    )
    assert not any(text.encode() in archived for text in secrets)
    assert {m.seq for m in await store.messages_after("d:4:5", 0, 100) if m.recalled} == {
        m.seq for m in picked.values()
    }
