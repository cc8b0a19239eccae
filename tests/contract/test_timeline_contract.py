"""The timeline contract (strategies/timeline/base.py) for every registered model, on every message store."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from core.clock import FakeClock
from core.metrics import Metrics
from core.models import Message, MessageDraft, MessageKind
from strategies import timeline
from strategies.context import StrategyContext
from strategies.ids.config import SnowflakeConfig
from strategies.ids.snowflake import SnowflakeIds
from strategies.store import MESSAGE_STORES
from strategies.store.base import MessageStore
from strategies.store.config import MessageStoreConfig
from strategies.timeline.base import Timeline, TimelineContext
from tests.support.stores import param_backend_config

INBOX = {"write"}  # models that keep a per-user inbox
_ids = itertools.count(9_000_000)


class Setup:
    def __init__(self, kind: str, store: MessageStore, tl: Timeline) -> None:
        self.kind = kind
        self.store = store
        self.timeline = tl


@pytest.fixture(params=[(t, s) for t in timeline.REGISTRY.names() for s in MESSAGE_STORES.names()], ids=str)
async def setup(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Setup]:
    tkind, skind = request.param
    async with param_backend_config(request, tmp_path, skind) as cfg:
        ctx = StrategyContext(FakeClock(start_wall_ms=1_800_000_000_000), Metrics(), tmp_path, "test")
        store = MESSAGE_STORES.create(TypeAdapter(MessageStoreConfig).validate_python(cfg), ctx)
        await store.start()
        ids = SnowflakeIds(SnowflakeConfig(node_id=3), ctx)
        tl = timeline.REGISTRY.create(
            timeline.REGISTRY.default_config(tkind), TimelineContext.of(ctx, store, ids)
        )
        await tl.start()
        try:
            yield Setup(tkind, store, tl)
        finally:
            await tl.close()
            await store.close()


async def stored(store: MessageStore, conv: str, text: str) -> Message:
    i = next(_ids)
    d = MessageDraft(i, conv, 1, "dev", f"c{i}", MessageKind.TEXT, {"text": text}, 1000, f"1:dev:c{i}")
    return (await store.append(d)).message


async def test_inbox_holds_each_members_messages_once_in_order(setup: Setup) -> None:
    msgs: list[Message] = []
    for i in range(7):
        conv = "g:1" if i % 2 else "d:1:2"
        m = await stored(setup.store, conv, f"t{i}")
        members = [1, 2, 3] if conv == "g:1" else [1, 2]
        await setup.timeline.on_append(m, members)
        if i == 3:
            await setup.timeline.on_append(m, members)  # a retried fan-out writes no second copy
        msgs.append(m)
    page = await setup.timeline.inbox_after(2, 0, 100)
    if setup.kind not in INBOX:
        assert page is None
        return
    assert page is not None and not page.more
    assert [m.id for m in page.messages] == [m.id for m in msgs]
    assert page.messages[4] == msgs[4]  # the original's id, conversation and seq
    only_group = await setup.timeline.inbox_after(3, 0, 100)
    assert only_group is not None and [m.body["text"] for m in only_group.messages] == ["t1", "t3", "t5"]
    # paging by cursor neither repeats nor skips
    seen: list[int] = []
    cursor = 0
    while True:
        p = await setup.timeline.inbox_after(2, cursor, 3)
        assert p is not None
        seen += [m.id for m in p.messages]
        cursor = p.cursor
        if not p.more:
            break
    assert seen == [m.id for m in msgs]
    assert (await setup.timeline.inbox_after(2, cursor, 3)) == type(p)([], cursor, False)


async def test_concurrent_fanouts_give_gap_free_inbox_seqs(setup: Setup) -> None:
    msgs = [await stored(setup.store, f"g:{i % 3 + 1}", f"t{i}") for i in range(12)]
    await asyncio.gather(*(setup.timeline.on_append(m, [5, 6]) for m in msgs))
    page = await setup.timeline.inbox_after(5, 0, 100)
    if setup.kind not in INBOX:
        assert page is None
        return
    assert page is not None and sorted(m.id for m in page.messages) == sorted(m.id for m in msgs)
    assert page.cursor == 12
