"""Read-through cache tiers in front of the stores.

Values are JSON-compatible (dict, list, str, int, float, bool, None) so every tier can hold them; callers treat a
returned value as immutable. ``None`` is a cacheable value; absence is :data:`MISS`.

Consistency: writers update the store first, then ``delete`` (or ``set``) the key in every tier. A reader may see a
stale value only in the window between the store write and the delete, or, for a tier on another node, until that
node processes the invalidation (see each implementation). Names group keys for metrics ("members", "profile"...).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol


class _Miss:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISS"

    def __bool__(self) -> bool:
        return False


MISS: Final = _Miss()


class Cache(Protocol):
    async def get(self, name: str, key: str) -> Any:
        """The cached value, or :data:`MISS`."""
        ...

    async def set(self, name: str, key: str, value: Any) -> None: ...

    async def delete(self, name: str, key: str) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


async def cached(cache: Cache, name: str, key: str, load: Callable[[], Awaitable[Any]]) -> Any:
    """Read-through: return the cached value or load it, store it and return it."""
    value = await cache.get(name, key)
    if value is MISS:
        value = await load()
        await cache.set(name, key, value)
    return value
