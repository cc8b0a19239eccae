"""Message search (docs/protocol.md "Search"): what the caller may read now, newest first, paged by a cursor."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from core.api.conversations import conversation
from core.api.deps import NodeDep, PrincipalDep, error_responses
from core.api.schemas import SearchOut
from core.protocol.frames import CONV_PATTERN, ID_PATTERN
from core.services.history import SEARCH_QUERY_MAX

router = APIRouter(prefix="/api/search", tags=["search"], responses=error_responses(401, 403, 404, 422))


@router.get("/messages", response_model=SearchOut)
async def search_messages(
    principal: PrincipalDep,
    node: NodeDep,
    q: Annotated[
        str,
        Query(
            min_length=1,
            max_length=SEARCH_QUERY_MAX,
            pattern=r"^[^\x00]+$",  # a NUL cannot be searched for (SQLite FTS5 refuses it): 422, not 503
            description="substring to find (case-insensitive for ASCII); 1-2 characters scan, 3+ use the index",
        ),
    ],
    conv: Annotated[
        str | None, Query(pattern=CONV_PATTERN, description="only this conversation (default: all of yours)")
    ] = None,
    before: Annotated[
        str | None, Query(pattern=ID_PATTERN, description="cursor: the `next` of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> SearchOut:
    """Messages whose text contains ``q``, newest first, from the conversations you may read (in a group only
    from your first readable seq; recalled messages never). Open one in context with
    ``GET /api/conversations/{conv}/messages?around={seq}``."""
    page = await node.history.search(
        principal.user_id,
        q,
        conv=conversation(conv) if conv is not None else None,
        before=before,
        limit=limit,
    )
    return SearchOut(**page)
