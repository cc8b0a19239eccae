from __future__ import annotations

import hashlib
import mmap
import os
import struct

from strategies.context import StrategyContext
from strategies.dedup.base import DedupRecord
from strategies.dedup.config import MemoryDedupConfig


def dedup_key(sender: int, device: str, cmid: str) -> str:
    return f"{sender}:{device}:{cmid}"


# One record: index hash, check hash, expiry (us), msg id, seq, ts (ms), fingerprint (16 bytes), conv (<= 48 bytes,
# NUL-padded). 120 bytes, a multiple of 8 so that a 'q' view reads the first fields of slot i at i * 15.
_RECORD = struct.Struct("<qqqqqq16s48s")
_Q = _RECORD.size // 8
_CONV_BYTES = 48
_KEY = os.urandom(16)  # per process: nobody outside can aim keys at one slot or at one another's hashes


def key_hashes(key: str) -> tuple[int, int]:
    """Two independent 64-bit hashes (keyed BLAKE2b): the first places the key, the second tells keys apart.

    Neither may be 0: an index cell of 0 means empty, and a record's hash of 0 marks it dead."""
    d = hashlib.blake2b(key.encode(), digest_size=16, key=_KEY).digest()
    h1, h2 = struct.unpack("<qq", d)
    return h1 or 1, h2 or 1


class MemoryDeduplicator:
    """The window in this process, as packed arrays: no Python object per remembered message.

    The 5-minute window at thousands of messages a second is a million records; as Python objects (a
    ``DedupRecord``, its strings, a cachetools link each) they made the collector's gen0/gen1 passes slow (83-905 ms
    pauses measured under load). Here a record is 120 bytes in one ``bytearray`` ring, written in arrival order so
    expiry is FIFO: the oldest records are dropped from the tail as the clock (injected) passes their expiry, or
    when the ring is full (``max_entries``, like the TTLCache's maxsize). An open-addressing index (linear probing,
    twice the ring's size, deletion by backward shift so no tombstones) maps a key's 64-bit hash to its slot. Both
    buffers are anonymous mmaps, so the OS commits their pages only as they are first written.

    Hash collisions: a record holds two independent 64-bit hashes of its key (keyed BLAKE2b). Keys that share the
    index hash or a probe run are stored side by side and told apart by the second hash, so they never answer for
    each other; a false answer needs both hashes of two live keys to collide (p ~ n^2 / 2^129, ~1e-27 for a full
    window of 1M keys) and the key is secret to the process, so a client cannot aim for one. Even then the
    messaging service compares the fingerprint of (conv, kind, body): a different message is not acked as the
    other; the window miss falls back to the store's unique index on the full key string.

    Conversations longer than 48 bytes and fingerprints that are not 32 hex digits are kept in a small side dict
    by slot (none in this project's formats). A node restart empties the window; the durable key still stops a
    late resend from being stored twice, it only costs a store round trip. Not shared between nodes: a resend to
    another node meets the unique index.
    """

    def __init__(self, config: MemoryDedupConfig, ctx: StrategyContext) -> None:
        self._clock = ctx.clock
        self._window_us = int(config.window_s * 1_000_000)
        self._cap = config.max_entries
        size = 1
        while size < 2 * self._cap:
            size <<= 1
        self._mask = size - 1
        self._side: dict[int, tuple[str, str]] = {}  # slot -> (conv, fingerprint) that do not fit the record
        self._allocate()

    def _allocate(self) -> None:
        self._ring = mmap.mmap(-1, self._cap * _RECORD.size)
        self._index_map = mmap.mmap(-1, (self._mask + 1) * 8)
        self._q = memoryview(self._ring).cast("q")
        self._index = memoryview(self._index_map).cast("q")  # slot + 1; 0 = empty
        self._head = 0  # next slot to write
        self._count = 0  # records from the tail (head - count) to the head, live or dead
        self._live = 0
        self._side.clear()

    def __len__(self) -> int:
        self._expire(self._now_us())
        return self._live

    def durable_key(self, sender: int, device: str, cmid: str) -> str | None:
        return dedup_key(sender, device, cmid)

    def _now_us(self) -> int:
        return int(self._clock.monotonic() * 1_000_000)

    async def lookup(self, key: str) -> DedupRecord | None:
        self._expire(self._now_us())
        h1, h2 = key_hashes(key)
        pos = self._find(h1, h2)
        if pos < 0:
            return None
        slot = self._index[pos] - 1
        _, _, _, msg_id, seq, ts, fp, conv = _RECORD.unpack_from(self._ring, slot * _RECORD.size)
        side = self._side.get(slot) if self._side else None
        if side is not None:
            return DedupRecord(msg_id, side[0], seq, ts, side[1])
        return DedupRecord(msg_id, conv.rstrip(b"\0").decode(), seq, ts, fp.hex())

    async def remember(self, key: str, record: DedupRecord) -> None:
        """The latest record of a key wins and its window starts again (as the TTLCache's did)."""
        now = self._now_us()
        self._expire(now)
        h1, h2 = key_hashes(key)
        pos = self._find(h1, h2)
        if pos >= 0:
            self._kill(self._index[pos] - 1)
            self._delete(pos)
        if self._count == self._cap:
            self._drop_tail()
        slot = self._head
        self._head = slot + 1 if slot + 1 < self._cap else 0
        self._count += 1
        self._live += 1
        conv = record.conv.encode()
        packed_fp = _pack_fingerprint(record.fingerprint)
        if len(conv) > _CONV_BYTES or b"\0" in conv or packed_fp is None:
            packed_fp, conv = b"", b""
            self._side[slot] = (record.conv, record.fingerprint)
        elif self._side:
            self._side.pop(slot, None)
        _RECORD.pack_into(
            self._ring,
            slot * _RECORD.size,
            h1,
            h2,
            now + self._window_us,
            record.msg_id,
            record.seq,
            record.ts_ms,
            packed_fp,
            conv,
        )
        self._insert(h1, slot)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        """Forget everything and give the memory back (a fresh, untouched window remains usable)."""
        self._q.release()
        self._index.release()
        self._ring.close()
        self._index_map.close()
        self._allocate()

    # ---------------------------------------------------------------- ring
    def _expire(self, now: int) -> None:
        q = self._q
        while self._count:
            tail = self._head - self._count
            if tail < 0:
                tail += self._cap
            if q[tail * _Q] != 0 and q[tail * _Q + 2] > now:
                return  # the oldest live record is still in its window, and so is every newer one
            self._drop_tail()

    def _drop_tail(self) -> None:
        tail = self._head - self._count
        if tail < 0:
            tail += self._cap
        h1 = self._q[tail * _Q]
        if h1 != 0:  # live: take it out of the index
            pos = h1 & self._mask
            index = self._index
            while index[pos] != tail + 1:
                pos = (pos + 1) & self._mask
            self._delete(pos)
            self._kill(tail)
        self._count -= 1

    def _kill(self, slot: int) -> None:
        self._q[slot * _Q] = 0
        self._live -= 1
        if self._side:
            self._side.pop(slot, None)

    # ---------------------------------------------------------------- index (linear probing)
    def _find(self, h1: int, h2: int) -> int:
        """The index position of the live record with both hashes, or -1."""
        index, q, mask = self._index, self._q, self._mask
        pos = h1 & mask
        while True:
            v = index[pos]
            if v == 0:
                return -1
            base = (v - 1) * _Q
            if q[base] == h1 and q[base + 1] == h2:
                return pos
            pos = (pos + 1) & mask

    def _insert(self, h1: int, slot: int) -> None:
        index, mask = self._index, self._mask
        pos = h1 & mask
        while index[pos] != 0:
            pos = (pos + 1) & mask
        index[pos] = slot + 1

    def _delete(self, pos: int) -> None:
        """Empty ``pos`` and shift later entries of its probe run back (Knuth's algorithm R): no tombstones."""
        index, q, mask = self._index, self._q, self._mask
        hole = pos
        j = pos
        while True:
            j = (j + 1) & mask
            v = index[j]
            if v == 0:
                break
            home = q[(v - 1) * _Q] & mask
            # leave it if its home lies cyclically in (hole, j]: the hole does not break its probe run
            if (hole < j and hole < home <= j) or (hole > j and (home > hole or home <= j)):
                continue
            index[hole] = v
            hole = j
        index[hole] = 0


def _pack_fingerprint(fp: str) -> bytes | None:
    """16 bytes for a fingerprint of 32 lowercase hex digits (what messaging makes), else None (kept as is)."""
    if len(fp) != 32:
        return None
    try:
        packed = bytes.fromhex(fp)
    except ValueError:
        return None
    return packed if packed.hex() == fp else None
