"""What the ``memory`` file storage adds to the files contract: its byte budget, like a disk that fills up."""

from __future__ import annotations

import errno

import pytest

from strategies.files.config import MemoryFilesConfig
from strategies.files.memory import MemoryFileStorage
from tests.support.context import strategy_context


async def test_the_budget_counts_uploads_in_progress_and_is_freed_by_abort_delete_and_overwrite() -> None:
    s = MemoryFileStorage(MemoryFilesConfig(max_bytes=10), strategy_context())
    w = await s.writer("a")
    await w.write(b"123456")
    other = await s.writer("b")
    with pytest.raises(OSError) as full:
        await other.write(b"12345")  # 6 reserved by the open upload + 5 > 10
    assert full.value.errno == errno.ENOSPC
    await w.abort()
    await other.write(b"12345")
    await other.commit()  # 5 used
    w = await s.writer("b")
    await w.write(b"12345")  # the old 5 bytes stay held until this commit replaces them
    with pytest.raises(OSError):
        await w.write(b"x")
    await w.commit()  # frees the old content: 5 used
    w = await s.writer("c")
    await w.write(b"12345")
    await w.commit()  # 10 used
    await s.delete("b")
    w = await s.writer("d")
    await w.write(b"12345")
    await w.commit()
    assert [await s.exists(k) for k in "abcd"] == [False, False, True, True]
    assert s.local_path("c") is None
