"""What only the MySQL stores promise, beyond the shared contract: user-keyed tables split by user-id hash,
a fixed shard count, and read/write splitting (which reads may go to the replica)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiomysql
import pytest

from core.metrics import Metrics
from core.models import FriendRequest, User
from strategies.store.config import MysqlStoreConfig
from strategies.store.mysql.users import MysqlUserStore, shard
from tests.support.stores import backend_config, context

_ids = itertools.count(384_000_000_000_000_000, 4099)  # snowflake-like ids


@pytest.fixture
async def dsn(tmp_path: Path) -> AsyncIterator[str]:
    async with backend_config("mysql", tmp_path, None) as cfg:
        yield cfg["dsn"]


def test_shard_function_spreads_snowflake_ids() -> None:
    counts = Counter(shard(next(_ids), 16) for _ in range(16_000))
    assert set(counts) == set(range(16))
    assert max(counts.values()) < 1.25 * min(counts.values())


async def test_users_land_in_their_shard_tables(dsn: str, tmp_path: Path) -> None:
    store = MysqlUserStore(MysqlStoreConfig(dsn=dsn, shards=4), context(tmp_path))
    await store.start()
    try:
        users = [User(next(_ids), f"u{i}", f"U{i}", "h", 1) for i in range(40)]
        for u in users:
            await store.create_user(u)
        db = dsn.rsplit("/", 1)[1]
        conn = await aiomysql.connect(host="127.0.0.1", user="root", db=db)
        try:
            async with conn.cursor() as cur:
                for n in range(4):
                    await cur.execute(f"SELECT id FROM users_{n:02d}")
                    ids = {int(r[0]) for r in await cur.fetchall()}
                    assert ids == {u.id for u in users if shard(u.id, 4) == n}
        finally:
            conn.close()
    finally:
        await store.close()


async def test_shard_count_is_fixed_at_creation(dsn: str, tmp_path: Path) -> None:
    store = MysqlUserStore(MysqlStoreConfig(dsn=dsn, shards=4), context(tmp_path))
    await store.start()
    await store.close()
    other = MysqlUserStore(MysqlStoreConfig(dsn=dsn, shards=8), context(tmp_path))
    with pytest.raises(ValueError, match="shards=4"):
        await other.start()
    await other.close()


async def test_only_display_reads_go_to_the_replica_and_never_a_cache_fill(dsn: str, tmp_path: Path) -> None:
    metrics = Metrics()
    ctx = context(tmp_path)
    ctx = type(ctx)(ctx.clock, metrics, ctx.data_dir, ctx.node_name)
    # The "replica" is the same database here: what is tested is which pool each read uses.
    cfg = MysqlStoreConfig(dsn=dsn, replica_dsn=dsn, shards=2, replica_check_s=0.05, replica_max_lag_s=60)
    store = MysqlUserStore(cfg, ctx)
    await store.start()
    try:
        u = User(next(_ids), "rita", "Rita", "h", 1)
        v = User(next(_ids), "vera", "Vera", "h", 1)
        await store.create_user(u)
        await store.create_user(v)

        def count(label: str) -> float:
            value = metrics.registry.get_sample_value(
                "wsim_store_op_seconds_count", {"store": f"mysql-{label}", "op": "users_read"}
            )
            return value or 0.0

        deadline = time.monotonic() + 10
        while metrics.registry.get_sample_value("wsim_store_replica_up", {"store": "users"}) != 1:
            assert time.monotonic() < deadline, "the replica was never attached"
            await asyncio.sleep(0.02)
        before = count("replica"), count("primary")
        await store.search_users("ri", 5)  # directory search, may lag: replica
        await store.list_friend_requests(u.id)  # display only, nobody wrote: replica
        mid = count("replica"), count("primary")
        assert mid[0] > before[0] and mid[1] == before[1]
        assert await store.get_user(u.id) == u  # fills the "profile" cache: primary
        await store.list_friends(u.id)  # fills the "friends" cache: primary
        await store.get_members(1)  # authorization of every send: primary
        await store.file_convs(1)  # authorization of a download right after the send: primary
        assert await store.get_user_by_name("rita") == u  # login right after registration: primary
        # read-your-writes: after a request between rita and vera, both read their lists from the primary
        await store.add_friend_request(FriendRequest(next(_ids), u.id, v.id, "hi", "pending", 1))
        assert [r.to_user for r in await store.list_friend_requests(u.id)] == [v.id]
        assert [r.from_user for r in await store.list_friend_requests(v.id)] == [u.id]
        after = count("replica"), count("primary")
        assert after[0] == mid[0] and after[1] > mid[1]
    finally:
        await store.close()
