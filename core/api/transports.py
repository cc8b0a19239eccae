"""``GET /api/transports``: which transports this node serves and how a device connects with each."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

router = APIRouter(prefix="/api/transports", tags=["transports"])


class TransportsOut(BaseModel):
    transports: list[dict[str, Any]]


@router.get("", response_model=TransportsOut)
async def list_transports(request: Request) -> TransportsOut:
    """The enabled transports (docs/transports.md), in configuration order; no authentication needed."""
    return TransportsOut(transports=[t.describe() for t in request.app.state.transports])
