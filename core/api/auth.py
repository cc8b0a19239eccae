from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from core.api.deps import NodeDep, PrincipalDep, client_address, error_responses
from core.api.schemas import LoginIn, RefreshIn, RegisterIn, TokensOut

router = APIRouter(prefix="/api/auth", tags=["auth"], responses=error_responses(422))


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=TokensOut,
    responses=error_responses(409),
)
async def register(body: RegisterIn, node: NodeDep) -> TokensOut:
    """Create an account and log in (Argon2id password hash; returns an access and a refresh token)."""
    pair = await node.accounts.register(body.username, body.password, body.display_name, body.device)
    return TokensOut.model_validate(pair.body())


@router.post("/login", response_model=TokensOut, responses=error_responses(401, 429))
async def login(body: LoginIn, node: NodeDep, request: Request) -> TokensOut:
    """Same answer and the same work for an unknown user and a wrong password; 429 after repeated failures."""
    pair = await node.accounts.login(body.username, body.password, client_address(request), body.device)
    return TokensOut.model_validate(pair.body())


@router.post("/refresh", response_model=TokensOut, responses=error_responses(401))
async def refresh(body: RefreshIn, node: NodeDep) -> TokensOut:
    """Rotate: the refresh token is single-use. Presenting a used one revokes its whole session."""
    pair = await node.accounts.refresh(body.refresh_token)
    return TokensOut.model_validate(pair.body())


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(401))
async def logout(principal: PrincipalDep, node: NodeDep) -> Response:
    """Revoke this login session and close its sockets on every node (close code 4010)."""
    await node.accounts.logout(principal.family)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
