"""Old messages for trying tiering by hand: ``n`` text messages in one conversation, spread evenly from
``--oldest-days`` ago to now, appended through the configured message store (so seqs, counters and dedup keys are
what the server would have written). Then ``wsim tier -c <config>`` moves what is due (docs/database.md).

    python -m experiments.seed_old_messages -c wsim.yaml --conv d:1:2 -n 300 --oldest-days 200

Ids have the snowflake layout with node id 1023, which no configured node uses, so they cannot collide with a
live node's ids. The messages' sender is user 1 (nobody in a fresh database): read them with the store or through
a conversation whose members you create.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping

from core.clock import SystemClock
from core.config import load_settings
from core.metrics import Metrics
from core.models import MessageDraft, MessageKind
from strategies.context import StrategyContext
from strategies.ids.config import SnowflakeConfig
from strategies.store import build_message_store

DAY_MS = 86_400_000
SEED_NODE_ID = 1023


async def seed_conversations(
    config: str | None, convs: Mapping[str, int], n: int, oldest_days: float, *, concurrency: int = 512
) -> int:
    """``n`` old messages in each conversation of ``convs`` (conversation -> sender), in one store session.

    Appends run ``concurrency`` at a time, so the store's group commit writes them in large batches; each
    conversation's messages are still appended oldest first (one append in flight per conversation), so its seqs
    follow time. The id's time bits are the message's own (old) time; ids stay unique across conversations that
    share a timestamp by taking the next free value of the 12 sequence bits (then the next millisecond)."""
    settings = load_settings(config)
    settings.data_path.mkdir(parents=True, exist_ok=True)
    ctx = StrategyContext(SystemClock(), Metrics(), settings.data_path, settings.server.node)
    epoch = SnowflakeConfig().epoch_ms
    store = build_message_store(settings.strategies.store, ctx)
    await store.start()
    used: dict[int, int] = {}  # ms -> sequence values taken in that millisecond
    now = ctx.clock.wall_ms()

    def new_id(ts: int) -> tuple[int, int]:
        while used.get(ts, 0) >= 4096:
            ts += 1
        low = used.get(ts, 0)
        used[ts] = low + 1
        return (ts - epoch) << 22 | SEED_NODE_ID << 12 | low, ts

    async def one_conversation(conv: str, sender: int) -> int:
        stored = 0
        for i in range(n):  # oldest first, so seqs follow time as in real traffic
            msg_id, ts = new_id(now - int(oldest_days * DAY_MS * (n - i) / n))
            cmid = f"seed-{msg_id}"
            draft = MessageDraft(
                msg_id, conv, sender, "seed", cmid, MessageKind.TEXT, {"text": f"old {i}"}, ts, f"{sender}:seed:{cmid}"
            )  # fmt: skip
            stored += (await store.append(draft)).created
        return stored

    limit = asyncio.Semaphore(concurrency)

    async def bounded(conv: str, sender: int) -> int:
        async with limit:
            return await one_conversation(conv, sender)

    try:
        counts = await asyncio.gather(*(bounded(c, s) for c, s in convs.items()))
    finally:
        await store.close()
    return sum(counts)


async def seed(config: str | None, conv: str, n: int, oldest_days: float, sender: int) -> int:
    return await seed_conversations(config, {conv: sender}, n, oldest_days)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", "-c", help="the server's YAML settings (its message store is written)")
    p.add_argument("--conv", default="d:1:2", help="conversation id (d:<a>:<b> or g:<group>)")
    p.add_argument("-n", type=int, default=300)
    p.add_argument("--oldest-days", type=float, default=200.0)
    p.add_argument("--sender", type=int, default=1)
    args = p.parse_args(argv)
    stored = asyncio.run(seed(args.config, args.conv, args.n, args.oldest_days, args.sender))
    print(f"stored {stored} messages in {args.conv}, {args.oldest_days:g} days old to now")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
