from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

from strategies.context import StrategyContext
from strategies.files.base import check_key
from strategies.files.config import LocalFilesConfig


class _LocalWriter:
    def __init__(self, tmp: Path, final: Path) -> None:
        self._tmp = tmp
        self._final = final
        self._fh = tmp.open("wb")

    async def write(self, chunk: bytes) -> None:
        await asyncio.to_thread(self._fh.write, chunk)

    async def commit(self) -> None:
        def _commit() -> None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._final.parent.mkdir(parents=True, exist_ok=True)
            self._tmp.replace(self._final)

        await asyncio.to_thread(_commit)

    async def abort(self) -> None:
        self._fh.close()
        self._tmp.unlink(missing_ok=True)


class LocalFileStorage:
    """Files on local disk under ``root``, sharded by key prefix; writes go to ``tmp/`` and are renamed on commit.

    Leftover ``*.part`` files from a crash mid-upload are removed at start-up.
    """

    def __init__(self, config: LocalFilesConfig, ctx: StrategyContext) -> None:
        root = Path(config.root)
        self._root = root if root.is_absolute() else ctx.data_dir / root
        self._tmp = self._root / "tmp"

    def _path(self, key: str) -> Path:
        return self._root / check_key(key)[:2] / key

    async def writer(self, key: str) -> _LocalWriter:
        final = self._path(key)
        tmp = self._tmp / f"{key}.{secrets.token_hex(4)}.part"
        return _LocalWriter(tmp, final)

    async def read(self, key: str, chunk_bytes: int = 65536) -> AsyncIterator[bytes]:
        path = self._path(key)
        with path.open("rb") as fh:
            while chunk := await asyncio.to_thread(fh.read, chunk_bytes):
                yield chunk

    async def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    async def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    async def start(self) -> None:
        self._tmp.mkdir(parents=True, exist_ok=True)
        for leftover in self._tmp.glob("*.part"):
            leftover.unlink(missing_ok=True)

    async def close(self) -> None:
        return None
