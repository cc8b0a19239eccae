from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from core.api.deps import NodeDep, PrincipalDep
from core.api.schemas import DeadLetterOut, DeadLettersOut, StatsOut
from core.config import mask_secrets
from core.errors import ErrorCode, ErrorOut, WsimError
from core.models import Principal


async def admin_principal(principal: PrincipalDep, node: NodeDep) -> Principal:
    user = await node.accounts.get_user(principal.user_id)
    if user.username not in node.settings.auth.admins:
        raise WsimError(ErrorCode.FORBIDDEN, "admin only")
    return principal


router = APIRouter(
    prefix="/api/admin",
    tags=["admin"],
    dependencies=[Depends(admin_principal)],
    responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}},
)


@router.get("/dead-letters", response_model=DeadLettersOut)
async def dead_letters(
    node: NodeDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> DeadLettersOut:
    """Deliveries given up after the last retry. The messages themselves are stored and reach devices on sync."""
    store = node.messages_store
    # Two reads, not one snapshot: a letter recorded between them must not make total smaller than the page.
    total = await store.count_dead_letters()
    items = await store.list_dead_letters(limit, offset)
    return DeadLettersOut(
        total=max(total, offset + len(items)) if items else total,
        items=[
            DeadLetterOut(
                id=str(d.id),
                msg_id=str(d.msg_id),
                conv=d.conv,
                seq=d.seq,
                user=str(d.user_id),
                device=d.device,
                attempts=d.attempts,
                reason=d.reason,
                created=d.created_ms,
            )
            for d in items
        ],
    )


@router.get("/stats", response_model=StatsOut)
async def stats(node: NodeDep) -> StatsOut:
    return StatsOut(
        node=node.name,
        connections=node.hub.connection_count,
        users_online_here=len(node.hub.local_users()),
        strategies=mask_secrets(node.settings.strategies.model_dump(mode="json")),
    )
