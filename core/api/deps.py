"""Shared pieces of the routers: the node and principal dependencies, path ids and the error responses."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from core.errors import ErrorCode, ErrorOut, WsimError
from core.models import Principal
from core.node import Node
from core.protocol.frames import CONV_PATTERN, ID_PATTERN
from core.types import parse_id

bearer = HTTPBearer(auto_error=False, description="Access token from /api/auth/login")


async def get_node(request: Request) -> Node:
    """``async`` on purpose: FastAPI runs a plain ``def`` dependency in its thread pool, one thread hop per request
    just to read ``app.state`` (seen in the tiering experiment's profile)."""
    node: Node = request.app.state.node
    return node


NodeDep = Annotated[Node, Depends(get_node)]


async def current_principal(
    node: NodeDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise WsimError(ErrorCode.UNAUTHORIZED, "missing bearer token")
    return await node.accounts.verify_access(credentials.credentials)


async def optional_principal(
    node: NodeDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal | None:
    if credentials is None:
        return None
    return await node.accounts.verify_access(credentials.credentials)


PrincipalDep = Annotated[Principal, Depends(current_principal)]
OptionalPrincipalDep = Annotated[Principal | None, Depends(optional_principal)]

UserIdPath = Annotated[str, Path(pattern=ID_PATTERN, description="user id (decimal string)")]
GroupIdPath = Annotated[str, Path(pattern=ID_PATTERN, description="group id (decimal string)")]
FileIdPath = Annotated[str, Path(pattern=ID_PATTERN, description="file id (decimal string)")]
RequestIdPath = Annotated[str, Path(pattern=ID_PATTERN, description="friend request id")]
ConvPath = Annotated[str, Path(pattern=CONV_PATTERN, description="conversation id: d:<a>:<b> or g:<group>")]


def ident(value: str, what: str = "object") -> int:
    """A path/body id as an int; an id no store can hold is simply not found."""
    try:
        return parse_id(value)
    except ValueError:
        raise WsimError(ErrorCode.NOT_FOUND, f"no such {what}") from None


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the statuses a route answers with the error body (a WsimError as ErrorOut)."""
    return {code: {"model": ErrorOut} for code in statuses}
