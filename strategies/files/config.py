from __future__ import annotations

from typing import Literal

from strategies._registry import StrategyConfig


class LocalFilesConfig(StrategyConfig):
    """Files on local disk under ``root``; served zero-copy."""

    implementation = "strategies.files.local:LocalFileStorage"
    kind: Literal["local"] = "local"
    # Relative paths are resolved against the server's data directory.
    root: str = "files"


FilesConfig = LocalFilesConfig
