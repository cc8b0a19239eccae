from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class LocalFilesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["local"] = "local"
    # Relative paths are resolved against the server's data directory.
    root: str = "files"


FilesConfig = LocalFilesConfig
