"""MongoDB message store (PyMongo's async API, ``AsyncMongoClient``). Schema, indexes and shard key are in
docs/database.md; ``experiments/mongo_shard_setup.js`` enables sharding on a real cluster.

Collections (``<prefix>`` + name):

* ``messages``: one document per message, shaped for the history query: ``{_id: <message id>, conv, seq,
  sender, device, cmid, kind, body, ts, recalled, dk}``. Unique ``(conv, seq)`` answers every page with one
  index range and makes a repeated seq impossible; unique ``(conv, dk)`` is the idempotency key (``dk`` is the
  dedup strategy's key, ``sender:device:cmid``; with dedup ``off`` it is ``m:<message id>`` so every resend is
  stored). Both start with ``conv`` so they stay enforceable when the collection is sharded on hashed ``conv``.
* ``conversations``: the durable counter document ``{_id: conv, last_seq}``, only ever raised (``$max``).
* ``marks``: ``{_id: "conv|user", conv, user, delivered, read}``, raised with ``$max``.
* ``dead_letters``.

Sequence allocation is optimistic and gap-free. A batch gives each conversation's new messages ``hint + 1, + 2...``
where the hint is this process's last seq for it (or the counter document after a restart), inserts them in order,
and lets the unique ``(conv, seq)`` index arbitrate: if another node took a number, the insert stops there, the hint
is refreshed from the highest stored seq and the rest is retried. A number is therefore never repeated (unique
index), never lower than one stored (hint refresh), and never skipped: a message is stored at a number only if
every lower number is stored, so the ordering buffers of clients never wait on a hole that cannot fill. (A counter
advanced with ``$inc`` *before* the insert would skip the number whenever the node died in between or the insert
lost a dedup race.) The counter document is raised after each batch and before the tier job removes messages, so
it never lags behind a number that is no longer in this collection.

"sent" is acknowledged after ``insert_many`` returns under the configured write concern (``majority`` +
journal by default), i.e. durable on a majority of a replica set. A write-concern error is reported as
unavailable: the client resends with the same cmid and the unique dedup index answers with the original.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cachetools import LRUCache
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, UpdateOne, WriteConcern
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, PyMongoError

from core.models import (
    AppendResult,
    ConversationHead,
    DeadLetter,
    Marks,
    Message,
    MessageDraft,
    MessageKind,
)
from strategies.context import StrategyContext
from strategies.store.base import StoreUnavailable, TierableStore
from strategies.store.config import MongoStoreConfig
from strategies.store.group_commit import GroupCommit, GroupCommitted, MarksBatch

log = logging.getLogger(__name__)

Doc = dict[str, Any]
_PROJECTION = {"dk": 0}


def _doc(m: Message, dk: str | None) -> Doc:
    return {
        "_id": m.id,
        "conv": m.conv,
        "seq": m.seq,
        "sender": m.sender,
        "device": m.device,
        "cmid": m.cmid,
        "kind": m.kind.value,
        "body": {} if m.recalled else m.body,
        "ts": m.ts_ms,
        "recalled": m.recalled,
        "dk": dk if dk is not None else f"m:{m.id}",
    }


def _message(d: Doc) -> Message:
    return Message(
        int(d["_id"]),
        d["conv"],
        int(d["seq"]),
        int(d["sender"]),
        d["device"],
        d["cmid"],
        MessageKind(d["kind"]),
        dict(d["body"]),
        int(d["ts"]),
        bool(d.get("recalled", False)),
    )


class MongoMessageStore(GroupCommitted):
    """Messages, marks and dead letters in MongoDB (module docstring)."""

    def __init__(self, config: MongoStoreConfig, ctx: StrategyContext) -> None:
        self._cfg = config
        self._metrics = ctx.metrics
        self._client: AsyncMongoClient[Doc] | None = None
        self._db: AsyncDatabase[Doc] | None = None
        self._last: LRUCache[str, int] = LRUCache(maxsize=max(1, config.seq_cache_entries))
        self._gc = GroupCommit(
            "mongo",
            self._commit,
            config.max_batch,
            ctx.metrics,
            quiet_errors=(PyMongoError,),
            # a failed batch may have stored some drafts under numbers we no longer trust: forget the hints
            on_failure=self._last.clear,
        )

    # ---------------------------------------------------------------- set-up
    def _coll(self, name: str) -> AsyncCollection[Doc]:
        if self._db is None:
            raise StoreUnavailable("mongo store is closed")
        return self._db[f"{self._cfg.collection_prefix}{name}"]

    @property
    def _messages(self) -> AsyncCollection[Doc]:
        return self._coll("messages")

    async def start(self) -> None:
        w: int | str = "majority" if self._cfg.write_concern == "majority" else 1
        self._client = AsyncMongoClient(
            self._cfg.uri,
            serverSelectionTimeoutMS=int(self._cfg.server_selection_timeout_s * 1000),
            w=w,
            journal=self._cfg.journal,
            tz_aware=False,
        )
        self._db = self._client.get_database(
            self._cfg.database, write_concern=WriteConcern(w=w, j=self._cfg.journal)
        )
        try:
            await self._ensure_indexes()
        except PyMongoError as exc:
            await self._client.close()
            self._client = self._db = None
            raise StoreUnavailable(f"mongo: {exc}") from exc
        self._gc.start()

    async def _ensure_indexes(self) -> None:
        """Index creation is idempotent in MongoDB: every node runs it on start (the schema's migration)."""
        m = self._messages
        await m.create_index([("conv", ASCENDING), ("seq", ASCENDING)], unique=True, name="conv_seq")
        await m.create_index([("conv", ASCENDING), ("dk", ASCENDING)], unique=True, name="conv_dk")
        await m.create_index([("ts", ASCENDING)], name="ts")
        await self._coll("marks").create_index([("conv", ASCENDING)], name="conv")
        await self._coll("dead_letters").create_index([("created_ms", DESCENDING)], name="created")

    async def close(self) -> None:
        await self._gc.close()
        if self._client is not None:
            await self._client.close()
        self._client = self._db = None

    # ---------------------------------------------------------------- group commit
    async def _commit(self, drafts: list[MessageDraft], marks: MarksBatch) -> list[AppendResult]:
        results, _ = await asyncio.gather(self._append_batch(drafts), self._write_marks(marks))
        return results

    async def _write_marks(self, marks: dict[tuple[str, int], list[int]]) -> None:
        if not marks:
            return
        await self._coll("marks").bulk_write(
            [
                UpdateOne(
                    {"_id": f"{conv}|{user}", "conv": conv},
                    {"$max": {"delivered": v[0], "read": v[1]}, "$setOnInsert": {"user": user}},
                    upsert=True,
                )
                for (conv, user), v in marks.items()
            ],
            ordered=False,
        )

    async def _append_batch(self, drafts: list[MessageDraft]) -> list[AppendResult]:
        results: list[AppendResult | None] = [None] * len(drafts)
        keyed = [(d.conv, d.dedup_key) for d in drafts if d.dedup_key is not None]
        originals: dict[tuple[str, str], Message] = {}
        if keyed:
            cursor = self._messages.find(
                {"conv": {"$in": sorted({c for c, _ in keyed})}, "dk": {"$in": sorted({k for _, k in keyed})}}
            )
            async for doc in cursor:
                originals[(doc["conv"], doc["dk"])] = _message(doc)
        by_conv: dict[str, list[int]] = {}
        for i, d in enumerate(drafts):
            key = (d.conv, d.dedup_key) if d.dedup_key is not None else None
            if key is not None and key in originals:
                results[i] = AppendResult(originals[key], False)
            else:
                by_conv.setdefault(d.conv, []).append(i)
        missing = [c for c in by_conv if c not in self._last]
        if missing:
            async for doc in self._coll("conversations").find({"_id": {"$in": missing}}):
                self._last[doc["_id"]] = int(doc["last_seq"])
        stored = await asyncio.gather(
            *(self._insert_conv(conv, [drafts[i] for i in idx]) for conv, idx in by_conv.items())
        )
        tops: dict[str, int] = {}
        for (conv, idx), conv_results in zip(by_conv.items(), stored, strict=True):
            for i, r in zip(idx, conv_results, strict=True):
                results[i] = r
                if r.created:
                    tops[conv] = max(tops.get(conv, 0), r.message.seq)
        if tops:
            await self._raise_counters(tops)
        out = [r for r in results if r is not None]
        assert len(out) == len(drafts)
        return out

    async def _raise_counters(self, tops: dict[str, int]) -> None:
        await self._coll("conversations").bulk_write(
            [UpdateOne({"_id": c}, {"$max": {"last_seq": s}}, upsert=True) for c, s in sorted(tops.items())],
            ordered=False,
        )

    async def _highest_seq(self, conv: str) -> int:
        doc = await self._messages.find_one({"conv": conv}, {"seq": 1}, sort=[("seq", DESCENDING)])
        counter = await self._coll("conversations").find_one({"_id": conv})
        return max(int(doc["seq"]) if doc else 0, int(counter["last_seq"]) if counter else 0)

    async def _insert_conv(self, conv: str, drafts: list[MessageDraft]) -> list[AppendResult]:
        """Insert one conversation's drafts in order at hint+1...; see the module docstring for why this is
        gap-free. Ordered inserts stop at the first conflict, so nothing after a conflict is stored out of turn."""
        out: list[AppendResult | None] = [None] * len(drafts)
        todo = list(range(len(drafts)))
        hint = self._last.get(conv, 0)
        for _ in range(100):
            if not todo:
                break
            msgs = [
                Message(d.id, d.conv, hint + 1 + k, d.sender, d.device, d.cmid, d.kind, d.body, d.ts_ms)
                for k, d in enumerate(drafts[i] for i in todo)
            ]
            docs = [_doc(m, drafts[i].dedup_key) for m, i in zip(msgs, todo, strict=True)]
            try:
                await self._messages.insert_many(docs, ordered=True)
                n = len(msgs)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if not errors or any(e.get("code") != 11000 for e in errors):
                    raise
                n = int(exc.details.get("nInserted", 0))
            for m, i in zip(msgs[:n], todo[:n], strict=True):
                out[i] = AppendResult(m, True)
            if n:
                hint = msgs[n - 1].seq
            todo = todo[n:]
            if not todo:
                break
            failed = drafts[todo[0]]
            doc = None
            if failed.dedup_key is not None:
                doc = await self._messages.find_one({"conv": conv, "dk": failed.dedup_key}, _PROJECTION)
            if doc is not None:  # stored meanwhile by another node: the resend's answer, no number used
                out[todo.pop(0)] = AppendResult(_message(doc), False)
            else:  # another node took the number: learn the real head and go on from there
                hint = await self._highest_seq(conv)
        else:  # pragma: no cover - 100 lost races in a row
            raise StoreUnavailable(f"mongo: too much contention on {conv}")
        self._last[conv] = hint
        done = [r for r in out if r is not None]
        assert len(done) == len(drafts)
        return done

    # ---------------------------------------------------------------- reads
    async def _find(self, query: Doc, sort: list[tuple[str, int]], limit: int) -> list[Message]:
        try:
            cursor = self._messages.find(query, _PROJECTION).sort(sort).limit(limit)
            return [_message(d) async for d in cursor]
        except PyMongoError as exc:
            raise StoreUnavailable(f"mongo: {exc}") from exc

    async def get_message(self, msg_id: int) -> Message | None:
        try:
            doc = await self._messages.find_one({"_id": msg_id}, _PROJECTION)
        except PyMongoError as exc:
            raise StoreUnavailable(f"mongo: {exc}") from exc
        return _message(doc) if doc else None

    async def messages_after(self, conv: str, after_seq: int, limit: int) -> list[Message]:
        with self._metrics.store_op("mongo", "messages_after"):
            return await self._find({"conv": conv, "seq": {"$gt": after_seq}}, [("seq", ASCENDING)], limit)

    async def messages_before(self, conv: str, before_seq: int, limit: int) -> list[Message]:
        with self._metrics.store_op("mongo", "messages_before"):
            msgs = await self._find({"conv": conv, "seq": {"$lt": before_seq}}, [("seq", DESCENDING)], limit)
        msgs.reverse()
        return msgs

    async def heads(self, convs: Iterable[str]) -> dict[str, ConversationHead]:
        keys = sorted(set(convs))
        out: dict[str, ConversationHead] = {}
        try:
            for i in range(0, len(keys), 1000):
                chunk = keys[i : i + 1000]
                last = {
                    d["_id"]: int(d["last_seq"])
                    async for d in self._coll("conversations").find({"_id": {"$in": chunk}})
                    if int(d["last_seq"]) > 0
                }
                if not last:
                    continue
                msgs = {
                    d["conv"]: _message(d)
                    async for d in self._messages.find(
                        {"$or": [{"conv": c, "seq": s} for c, s in last.items()]}, _PROJECTION
                    )
                }
                for c, s in last.items():
                    out[c] = ConversationHead(c, s, msgs.get(c))
        except PyMongoError as exc:
            raise StoreUnavailable(f"mongo: {exc}") from exc
        return out

    async def mark_recalled(self, msg_id: int) -> bool:
        try:
            r = await self._messages.update_one(
                {"_id": msg_id, "recalled": False}, {"$set": {"recalled": True, "body": {}}}
            )
        except PyMongoError as exc:
            raise StoreUnavailable(f"mongo: {exc}") from exc
        return r.modified_count > 0

    async def get_marks(self, conv: str) -> dict[int, Marks]:
        try:
            return {
                int(d["user"]): Marks(int(d.get("delivered", 0)), int(d.get("read", 0)))
                async for d in self._coll("marks").find({"conv": conv})
            }
        except PyMongoError as exc:
            raise StoreUnavailable(f"mongo: {exc}") from exc

    async def user_marks(self, user_id: int, convs: Iterable[str]) -> dict[str, Marks]:
        ids = [f"{c}|{user_id}" for c in set(convs)]
        out: dict[str, Marks] = {}
        try:
            for i in range(0, len(ids), 1000):
                async for d in self._coll("marks").find({"_id": {"$in": ids[i : i + 1000]}}):
                    out[d["conv"]] = Marks(int(d.get("delivered", 0)), int(d.get("read", 0)))
        except PyMongoError as exc:
            raise StoreUnavailable(f"mongo: {exc}") from exc
        return out

    # ---------------------------------------------------------------- dead letters
    async def add_dead_letter(self, letter: DeadLetter) -> None:
        try:
            await self._coll("dead_letters").insert_one(
                {
                    "_id": letter.id,
                    "msg_id": letter.msg_id,
                    "conv": letter.conv,
                    "seq": letter.seq,
                    "user_id": letter.user_id,
                    "device": letter.device,
                    "attempts": letter.attempts,
                    "reason": letter.reason,
                    "created_ms": letter.created_ms,
                }
            )
        except PyMongoError as exc:
            raise StoreUnavailable(f"mongo: {exc}") from exc

    async def list_dead_letters(self, limit: int, offset: int) -> list[DeadLetter]:
        try:
            cursor = self._coll("dead_letters").find({}).sort("_id", DESCENDING).skip(offset).limit(limit)
            return [
                DeadLetter(
                    int(d["_id"]),
                    int(d["msg_id"]),
                    d["conv"],
                    int(d["seq"]),
                    int(d["user_id"]),
                    d["device"],
                    int(d["attempts"]),
                    d["reason"],
                    int(d["created_ms"]),
                )
                async for d in cursor
            ]
        except PyMongoError as exc:
            raise StoreUnavailable(f"mongo: {exc}") from exc

    async def count_dead_letters(self) -> int:
        try:
            return int(await self._coll("dead_letters").count_documents({}))
        except PyMongoError as exc:
            raise StoreUnavailable(f"mongo: {exc}") from exc

    # ---------------------------------------------------------------- search
    async def search_messages(
        self, windows: Mapping[str, int], query: str, before_id: int | None, limit: int
    ) -> list[Message]:
        """A regex over ``body.text`` within the caller's windows: the ``(conv, seq)`` index bounds the scan to
        the conversations the caller may read. Not ``$text``: MongoDB's text index has no CJK tokenizer (a
        Chinese sentence would be one "word"), and Atlas Search is not part of a self-hosted server."""
        if not windows or not query:
            return []
        pattern = {"$regex": re.escape(query), "$options": "i"}
        upper = before_id if before_id is not None else 2**63 - 1
        found: list[Message] = []
        items = sorted(windows.items())
        for i in range(0, len(items), 500):
            scope = [{"conv": c, "seq": {"$gte": first}} for c, first in items[i : i + 500]]
            with self._metrics.store_op("mongo", "search"):
                found += await self._find(
                    {"$or": scope, "recalled": False, "_id": {"$lt": upper}, "body.text": pattern},
                    [("_id", DESCENDING)],
                    limit,
                )
        found.sort(key=lambda m: m.id, reverse=True)
        return found[:limit]

    # ---------------------------------------------------------------- tiering (TierableStore)
    async def oldest(self, before_ts_ms: int, limit: int) -> list[Message]:
        return await self._find({"ts": {"$lt": before_ts_ms}}, [("ts", ASCENDING), ("_id", ASCENDING)], limit)

    async def import_messages(self, messages: Sequence[Message]) -> int:
        """Unordered insert; a copy already present fails on ``_id`` / ``(conv, seq)`` and is skipped."""
        if not messages:
            return 0
        try:
            try:
                result = await self._messages.insert_many([_doc(m, None) for m in messages], ordered=False)
                added = len(result.inserted_ids)
            except BulkWriteError as exc:
                if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                    raise
                added = int(exc.details.get("nInserted", 0))
            tops: dict[str, int] = {}
            for m in messages:
                tops[m.conv] = max(tops.get(m.conv, 0), m.seq)
            await self._raise_counters(tops)
        except PyMongoError as exc:
            raise StoreUnavailable(f"mongo: {exc}") from exc
        return added

    async def delete_messages(self, messages: Sequence[Message]) -> int:
        if not messages:
            return 0
        tops: dict[str, int] = {}
        for m in messages:
            tops[m.conv] = max(tops.get(m.conv, 0), m.seq)
        try:
            # The counter must cover every number before its message leaves this collection (module docstring).
            await self._raise_counters(tops)
            total = 0
            ids = [m.id for m in messages]
            for i in range(0, len(ids), 1000):
                r = await self._messages.delete_many({"_id": {"$in": ids[i : i + 1000]}})
                total += r.deleted_count
        except PyMongoError as exc:
            raise StoreUnavailable(f"mongo: {exc}") from exc
        return total


if TYPE_CHECKING:  # mypy checks that the class meets the role it is registered for
    _meets: type[TierableStore] = MongoMessageStore
