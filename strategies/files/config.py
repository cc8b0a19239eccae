from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from strategies._registry import StrategyConfig


class LocalFilesConfig(StrategyConfig, implementation="strategies.files.local:LocalFileStorage"):
    """Files on local disk under ``root``; served zero-copy."""

    kind: Literal["local"] = "local"
    # Relative paths are resolved against the server's data directory.
    root: str = "files"


class MemoryFilesConfig(StrategyConfig, implementation="strategies.files.memory:MemoryFileStorage"):
    """Files in the node's memory, within ``max_bytes``: no disk, streamed like a remote store; lost at restart."""

    kind: Literal["memory"] = "memory"
    max_bytes: Annotated[int, Field(ge=1)] = 256 * 1024 * 1024


FilesConfig = Annotated[LocalFilesConfig | MemoryFilesConfig, Field(discriminator="kind")]
