"""Object stores for the cold tier, and the cold tier's file format.

An :class:`Archive` is a flat key -> bytes store with atomic puts (a reader sees a whole object or none) and
prefix listing: a local directory by default, any S3-compatible store when configured (strategies/store/s3.py).

Recall in the cold tier: a marker object ``cold/<hash>/<conversation>/recalled/<seq>-<id>`` is written first (readers
apply it, so the recall holds on every node at once and two recalls of one object cannot undo each other), then
the object that holds the message is rewritten without its body (same key, atomic put), so the text leaves the
archive too. An id index (``index/<first id>-<last id>-<digest>.json``, id -> conversation, one per archived
batch) finds a message's conversation from its id alone.

Cold files: one gzip-compressed JSON-lines object per (conversation, run of messages),
``cold/<2 hex of the conversation hash>/<conversation>/<first seq>-<last seq>-<digest>.jsonl.gz``. The seq range in the
name lets a reader open only the objects that overlap a page; the digest of the ids makes two different runs over
the same range two different objects (the tier job never overwrites). gzip from the standard library keeps the
archive readable with ``zcat`` anywhere; compression ratio on chat text is ~4-6x. A line is one message in its
wire form (``Message.wire``, as devices receive it); objects written with integer ids read the same.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

import orjson
from cachetools import LRUCache

from core.models import Message
from strategies.context import StrategyContext
from strategies.store.config import LocalArchiveConfig

_CONV = re.compile(r"^[a-z]:[0-9:]+$")
_NAME = re.compile(r"^(\d{12})-(\d{12})-([0-9a-f]{16})\.jsonl\.gz$")
_MARK = re.compile(r"^recalled/(\d{12})-(\d+)$")
_INDEX = re.compile(r"^index/(\d{20})-(\d{20})-([0-9a-f]{16})\.json$")
INDEX_PREFIX = "index/"


class Archive(Protocol):
    """Durable key -> bytes. ``put`` is atomic and durable when it returns; ``list`` returns every key under a
    prefix, sorted."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def put(self, key: str, data: bytes) -> None: ...

    async def get(self, key: str) -> bytes | None: ...

    async def list(self, prefix: str) -> list[str]: ...


class LocalArchive:
    """A directory. ``put`` writes a temporary file, fsyncs it and renames it into place (atomic on POSIX), then
    fsyncs the directory, so a crash leaves either the whole object or none."""

    def __init__(self, config: LocalArchiveConfig, ctx: StrategyContext) -> None:
        p = Path(config.path)
        self.root = p if p.is_absolute() else ctx.data_dir / p

    async def start(self) -> None:
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)

    async def close(self) -> None:
        return None

    def _path(self, key: str) -> Path:
        """The file of ``key``, refused when the key could leave the archive (absolute, ``..``, empty parts).

        A check of the key's text, not ``Path.resolve()``: resolving every key walked the path with one syscall per
        component on every cold read, and the tiering experiment's profile had those walks in the executor threads
        fighting the event loop for the GIL (docs/database.md). Keys are made by this module from validated
        conversation ids; the archive directory holds no symlinks of ours."""
        parts = PurePosixPath(key).parts
        if not key or key.startswith("/") or "\\" in key or ".." in parts:
            raise ValueError(f"archive key escapes the archive: {key!r}")
        return self.root / key

    def _put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._put, key, data)

    def _get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    async def get(self, key: str) -> bytes | None:
        return await asyncio.to_thread(self._get, key)

    def _list(self, prefix: str) -> list[str]:
        """Keys under ``prefix``, from one ``os.walk`` (scandir: no stat or path resolution per file)."""
        base = self._path(prefix) if prefix else self.root
        start = base if base.is_dir() else base.parent
        if not start.is_dir():
            return []
        root = str(self.root)
        keys: list[str] = []
        for dirpath, _dirs, files in os.walk(start):
            rel = dirpath[len(root) + 1 :]
            keys.extend(f"{rel}/{name}" if rel else name for name in files if not name.startswith("."))
        return sorted(k for k in keys if k.startswith(prefix))

    async def list(self, prefix: str) -> list[str]:
        return await asyncio.to_thread(self._list, prefix)


# --------------------------------------------------------------------------- cold tier format


def conv_prefix(conv: str) -> str:
    if not _CONV.match(conv):
        raise ValueError(f"not a conversation id: {conv!r}")
    shard = hashlib.blake2b(conv.encode(), digest_size=1).hexdigest()
    return f"cold/{shard}/{conv}/"


@dataclass(frozen=True, slots=True)
class ColdObject:
    key: str
    first: int
    last: int
    # seqs in [first, last] that a recall marker hides (the object may still hold their body until rewritten)
    recalled: frozenset[int] = frozenset()


def _hide(m: Message) -> Message:
    return dataclasses.replace(m, recalled=True, body={})


def encode_cold(messages: Sequence[Message]) -> tuple[str, bytes]:
    """(object name, gzip bytes) for one conversation's messages, in seq order."""
    ordered = sorted(messages, key=lambda m: m.seq)
    digest = hashlib.blake2b(b",".join(str(m.id).encode() for m in ordered), digest_size=8).hexdigest()
    name = f"{ordered[0].seq:012d}-{ordered[-1].seq:012d}-{digest}.jsonl.gz"
    body = b"".join(orjson.dumps(m.wire()) + b"\n" for m in ordered)
    return name, gzip.compress(body, compresslevel=6, mtime=0)


def decode_cold(data: bytes) -> list[Message]:
    return [Message.from_wire(orjson.loads(line)) for line in gzip.decompress(data).splitlines() if line]


def encode_index(messages: Sequence[Message]) -> tuple[str, bytes]:
    """(key, bytes) of the id index of one archived batch: id -> conversation."""
    ids = sorted(m.id for m in messages)
    digest = hashlib.blake2b(b",".join(str(i).encode() for i in ids), digest_size=8).hexdigest()
    key = f"{INDEX_PREFIX}{ids[0]:020d}-{ids[-1]:020d}-{digest}.json"
    return key, orjson.dumps({str(m.id): m.conv for m in messages})


class ColdTier:
    """Reads the cold tier with the history queries' shapes (``messages_before`` / ``messages_after``)."""

    def __init__(self, archive: Archive, cache_objects: int = 256) -> None:
        self.archive = archive
        self._objects: LRUCache[str, list[Message]] = LRUCache(maxsize=cache_objects)

    async def objects(self, conv: str) -> list[ColdObject]:
        prefix = conv_prefix(conv)
        found: list[tuple[str, int, int]] = []
        marks: set[int] = set()
        for key in await self.archive.list(prefix):
            name = key[len(prefix) :]
            if m := _NAME.match(name):
                found.append((key, int(m.group(1)), int(m.group(2))))
            elif r := _MARK.match(name):
                marks.add(int(r.group(1)))
        return [
            ColdObject(key, first, last, frozenset(s for s in marks if first <= s <= last))
            for key, first, last in found
        ]

    async def read(self, obj: ColdObject) -> list[Message]:
        cached = self._objects.get(obj.key)
        if cached is None:
            data = await self.archive.get(obj.key)
            cached = decode_cold(data) if data is not None else []
            self._objects[obj.key] = cached
        if obj.recalled:
            return [_hide(m) if m.seq in obj.recalled and not m.recalled else m for m in cached]
        return cached

    async def find(self, msg_id: int) -> Message | None:
        """The archived message with this id (through the id index), or None."""
        located = await self._locate(msg_id)
        return None if located is None else located[1]

    async def _locate(self, msg_id: int) -> tuple[ColdObject, Message] | None:
        for key in await self.archive.list(INDEX_PREFIX):
            m = _INDEX.match(key)
            if m is None or not int(m.group(1)) <= msg_id <= int(m.group(2)):
                continue
            data = await self.archive.get(key)
            conv = orjson.loads(data).get(str(msg_id)) if data is not None else None
            if conv is None:
                continue
            for obj in await self.objects(conv):
                for msg in await self.read(obj):
                    if msg.id == msg_id:
                        return obj, msg
        return None

    async def recall(self, msg_id: int) -> bool:
        """Hide an archived message: marker first, then rewrite its object without the body (module docstring).
        False if the message is not archived or already recalled."""
        located = await self._locate(msg_id)
        if located is None or located[1].recalled:
            return False
        obj, msg = located
        await self.archive.put(f"{conv_prefix(msg.conv)}recalled/{msg.seq:012d}-{msg.id}", b"")
        data = await self.archive.get(obj.key)
        if data is not None:
            rewritten = [_hide(m) if m.id == msg_id else m for m in decode_cold(data)]
            name, body = encode_cold(rewritten)
            assert obj.key.endswith(name)  # same ids, same range: the same key
            await self.archive.put(obj.key, body)
        self._objects.pop(obj.key, None)
        return True

    async def _collect(self, conv: str, objs: Iterable[ColdObject]) -> dict[int, Message]:
        got: dict[int, Message] = {}
        for o in objs:
            for m in await self.read(o):
                got.setdefault(m.seq, m)
        return got

    async def seqs(self, conv: str, lo: int, hi: int) -> set[int]:
        """Seqs in [lo, hi] that the cold tier already holds (the tier job's idempotency check)."""
        objs = [o for o in await self.objects(conv) if o.last >= lo and o.first <= hi]
        return {s for s in await self._collect(conv, objs) if lo <= s <= hi}

    async def messages_before(self, conv: str, before_seq: int, limit: int) -> list[Message]:
        """Objects are read newest first; reading stops once ``limit`` messages lie above every unread object."""
        if limit <= 0:
            return []
        objs = sorted((o for o in await self.objects(conv) if o.first < before_seq), key=lambda o: -o.last)
        got: dict[int, Message] = {}
        for i, o in enumerate(objs):
            for m in await self.read(o):
                if m.seq < before_seq:
                    got.setdefault(m.seq, m)
            rest = max((x.last for x in objs[i + 1 :]), default=0)
            if sum(1 for s in got if s > rest) >= limit:
                break
        return [got[s] for s in sorted(got)[-limit:]]

    async def messages_after(self, conv: str, after_seq: int, limit: int) -> list[Message]:
        """Objects are read oldest first; reading stops once ``limit`` messages lie below every unread object."""
        if limit <= 0:
            return []
        objs = sorted((o for o in await self.objects(conv) if o.last > after_seq), key=lambda o: o.first)
        got: dict[int, Message] = {}
        for i, o in enumerate(objs):
            for m in await self.read(o):
                if m.seq > after_seq:
                    got.setdefault(m.seq, m)
            rest = min((x.first for x in objs[i + 1 :]), default=2**63)
            if sum(1 for s in got if s < rest) >= limit:
                break
        return [got[s] for s in sorted(got)[:limit]]
