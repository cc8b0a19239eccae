from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from core.api.deps import ConvPath, NodeDep, PrincipalDep
from core.api.schemas import ConversationOut, ConversationsOut, HistoryOut, ReceiptsOut
from core.errors import ErrorCode, ErrorOut, WsimError
from core.protocol.frames import MAX_SEQ
from core.types import parse_conversation

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut},
    403: {"model": ErrorOut},
    404: {"model": ErrorOut},
    422: {"model": ErrorOut},
}


def conversation(conv: str) -> str:
    """A well-formed id of a conversation that can exist; any other id is simply not found."""
    try:
        parse_conversation(conv)
    except ValueError:
        raise WsimError(ErrorCode.NOT_FOUND, "no such conversation") from None
    return conv


router = APIRouter(prefix="/api/conversations", tags=["conversations"], responses=_ERRORS)


@router.get("", response_model=ConversationsOut)
async def list_conversations(principal: PrincipalDep, node: NodeDep) -> ConversationsOut:
    """Your conversations, most recently active first, with the last message and the unread count."""
    convs = await node.messaging.conversations(principal.user_id)
    return ConversationsOut(conversations=[ConversationOut(**c) for c in convs])


@router.get("/{conv}/messages", response_model=HistoryOut)
async def history(
    conv: ConvPath,
    principal: PrincipalDep,
    node: NodeDep,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_SEQ, description="page of messages with seq < before")
    ] = None,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_SEQ, description="page of messages with seq > after")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    around: Annotated[
        int | None,
        Query(ge=1, le=MAX_SEQ, description="page centred on this seq (jump to a search result or a quote)"),
    ] = None,
) -> HistoryOut:
    """History paged by sequence number, ascending. Without ``before``/``after``/``around``: the newest page;
    ``before`` with ``after`` (or ``around`` with either) is 422 ``invalid``. ``around``: up to ``limit`` messages,
    half of them at or below ``around`` and half above. ``has_older``: readable messages exist before the page's
    first; ``has_newer``: messages exist after its last (page forward with ``after=<last seq>``)."""
    page = await node.messaging.history(
        principal.user_id, conversation(conv), before=before, after=after, limit=limit, around=around
    )
    return HistoryOut(**page)


@router.get("/{conv}/receipts", response_model=ReceiptsOut)
async def receipts(conv: ConvPath, principal: PrincipalDep, node: NodeDep) -> ReceiptsOut:
    """Each member's delivered and read marks (a message's read count = members with read >= its seq)."""
    return ReceiptsOut.model_validate(await node.messaging.receipts(principal.user_id, conversation(conv)))
