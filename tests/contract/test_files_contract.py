"""The file storage contract (strategies/files/base.py) for every registered kind.

A write is visible only after ``commit``; ``abort`` or an upload left open leaves nothing readable; a commit
replaces the whole content; reads come in chunks of at most ``chunk_bytes``; keys are flat names; a local path,
when offered, holds exactly the committed bytes."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from strategies import files
from strategies.files.base import FileStorage
from tests.support.context import strategy_context
from tests.support.contract import contract_config, require_backend


@pytest.fixture(params=files.REGISTRY.names())
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FileStorage]:
    kind: str = request.param
    require_backend(files.REGISTRY, kind)
    s = files.REGISTRY.create(contract_config(files.REGISTRY, kind), strategy_context(tmp_path))
    await s.start()
    yield s
    await s.close()


async def content(s: FileStorage, key: str, chunk_bytes: int = 65536) -> bytes:
    return b"".join([c async for c in s.read(key, chunk_bytes)])


async def put(s: FileStorage, key: str, *chunks: bytes) -> None:
    w = await s.writer(key)
    for c in chunks:
        await w.write(c)
    await w.commit()


def key() -> str:
    return secrets.token_hex(8)


async def test_a_write_is_visible_only_after_commit(storage: FileStorage) -> None:
    k = key()
    w = await storage.writer(k)
    await w.write(b"hello ")
    await w.write(b"world")
    assert not await storage.exists(k)
    with pytest.raises(FileNotFoundError):
        await content(storage, k)
    await w.commit()
    assert await storage.exists(k)
    assert await content(storage, k) == b"hello world"


async def test_abort_leaves_nothing_and_keeps_the_old_content(storage: FileStorage) -> None:
    k = key()
    w = await storage.writer(k)
    await w.write(b"partial")
    await w.abort()
    assert not await storage.exists(k)
    await put(storage, k, b"v1")
    w = await storage.writer(k)
    await w.write(b"v2 that never commits")
    await w.abort()
    assert await content(storage, k) == b"v1"


async def test_a_commit_replaces_the_whole_content(storage: FileStorage) -> None:
    k = key()
    await put(storage, k, b"a much longer first version")
    await put(storage, k, b"short")
    assert await content(storage, k) == b"short"


async def test_reads_come_in_bounded_chunks(storage: FileStorage) -> None:
    k = key()
    data = bytes(range(256)) * 40  # 10,240 bytes
    await put(storage, k, data[:1000], data[1000:])
    chunks = [c async for c in storage.read(k, 4096)]
    assert b"".join(chunks) == data
    assert all(0 < len(c) <= 4096 for c in chunks)
    await put(storage, k, b"")
    assert await storage.exists(k) and await content(storage, k) == b""


async def test_delete_removes_and_tolerates_a_missing_key(storage: FileStorage) -> None:
    k = key()
    await put(storage, k, b"x")
    await storage.delete(k)
    assert not await storage.exists(k)
    await storage.delete(k)
    await storage.delete(key())


@pytest.mark.parametrize("bad", ["", "../escape", "a/b", "..", "x" * 129, "sp ace"])
async def test_keys_are_flat_names(storage: FileStorage, bad: str) -> None:
    with pytest.raises(ValueError, match="invalid storage key"):
        await storage.writer(bad)
    with pytest.raises(ValueError, match="invalid storage key"):
        await storage.exists(bad)


async def test_a_local_path_holds_the_committed_bytes(storage: FileStorage) -> None:
    k = key()
    await put(storage, k, b"zero-copy")
    path = storage.local_path(k)
    if path is not None:  # remote or in-memory stores stream through read()
        assert path.read_bytes() == b"zero-copy"


async def test_keys_do_not_share_content(storage: FileStorage) -> None:
    a, b = key(), key()
    await put(storage, a, b"alpha")
    await put(storage, b, b"beta")
    await storage.delete(a)
    assert await content(storage, b) == b"beta"
