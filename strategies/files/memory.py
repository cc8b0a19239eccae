"""File storage in the node's memory: no disk, and no local path, so uploads and downloads take the streaming
path that a remote object store takes (``FileService`` reads the bytes back, the API streams them)."""

from __future__ import annotations

import errno
import os
from collections.abc import AsyncIterator

from strategies.context import StrategyContext
from strategies.files.base import check_key
from strategies.files.config import MemoryFilesConfig


class _MemoryWriter:
    def __init__(self, storage: MemoryFileStorage, key: str) -> None:
        self._storage = storage
        self._key = key
        self._chunks: list[bytes] = []
        self._size = 0
        self._open = True

    async def write(self, chunk: bytes) -> None:
        if not self._open:
            raise ValueError("write after commit or abort")
        self._storage._reserve(len(chunk))
        self._chunks.append(bytes(chunk))
        self._size += len(chunk)

    async def commit(self) -> None:
        if self._open:
            self._open = False
            self._storage._publish(self._key, b"".join(self._chunks))
            self._chunks = []

    async def abort(self) -> None:
        if self._open:
            self._open = False
            self._storage._release(self._size)
            self._chunks = []


class MemoryFileStorage:
    """Files as bytes in this process, within a budget of ``max_bytes`` (committed files plus uploads in
    progress; a write beyond it fails like a full disk, ENOSPC).

    A commit replaces the key's content atomically (a reader that started before keeps the old bytes); an abort
    frees its reservation. Not durable and not shared: a restart loses every file and other nodes see none, so it
    suits single-node tests and experiments that should not measure disk I/O, never a deployment.
    """

    def __init__(self, config: MemoryFilesConfig, ctx: StrategyContext) -> None:
        del ctx
        self._max_bytes = config.max_bytes
        self._files: dict[str, bytes] = {}
        self._used = 0  # committed bytes plus the reservations of open writers

    def _reserve(self, size: int) -> None:
        if self._used + size > self._max_bytes:
            raise OSError(errno.ENOSPC, f"memory file storage full ({self._max_bytes} bytes)")
        self._used += size

    def _release(self, size: int) -> None:
        self._used -= size

    def _publish(self, key: str, data: bytes) -> None:
        """Make ``data`` (already reserved by its writes) the content of ``key``, freeing what it replaces."""
        old = self._files.get(key)
        if old is not None:
            self._release(len(old))
        self._files[key] = data

    async def writer(self, key: str) -> _MemoryWriter:
        return _MemoryWriter(self, check_key(key))

    async def read(self, key: str, chunk_bytes: int = 65536) -> AsyncIterator[bytes]:
        data = self._files.get(check_key(key))
        if data is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), key)
        view = memoryview(data)
        for start in range(0, len(data), chunk_bytes):
            yield bytes(view[start : start + chunk_bytes])

    async def exists(self, key: str) -> bool:
        return check_key(key) in self._files

    async def delete(self, key: str) -> None:
        old = self._files.pop(check_key(key), None)
        if old is not None:
            self._release(len(old))

    def local_path(self, key: str) -> None:
        return None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None
