from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class SqliteStoreConfig(BaseModel):
    """SQLite in WAL mode. ``synchronous=NORMAL`` makes a commit durable against a process crash (kill -9) but not
    against power loss; ``FULL`` survives power loss at a throughput cost."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["sqlite"] = "sqlite"
    # Relative paths are resolved against the server's data directory.
    path: str = "wsim.db"
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    # Group commit: appends and marks that arrive together share one transaction, at most this many.
    max_batch: Annotated[int, Field(ge=1, le=10_000)] = 512
    busy_timeout_ms: Annotated[int, Field(ge=0)] = 10_000


UserStoreConfig = SqliteStoreConfig
MessageStoreConfig = SqliteStoreConfig


class StoreConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    users: UserStoreConfig = Field(default_factory=lambda: SqliteStoreConfig(path="users.db"))
    messages: MessageStoreConfig = Field(default_factory=lambda: SqliteStoreConfig(path="messages.db"))
