"""Users, friends and blocks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from core.api.deps import NodeDep, PrincipalDep, RequestIdPath, UserIdPath, error_responses, ident
from core.api.schemas import (
    FriendOut,
    FriendRequestIn,
    FriendRequestOut,
    FriendRequestsOut,
    FriendsOut,
    ProfileIn,
    RemarkIn,
    UserOut,
    UsersOut,
)
from core.errors import ErrorCode, WsimError
from core.models import FriendRequest
from core.node import Node
from core.types import direct_conversation

router = APIRouter(prefix="/api", tags=["users"], responses=error_responses(401, 403, 404, 409, 422))
NO_CONTENT = status.HTTP_204_NO_CONTENT


async def _users_out(node: Node, viewer: int, ids: list[int]) -> dict[int, UserOut]:
    """Profiles as ``viewer`` sees them: ``online`` only where presence frames would tell them (friends, not
    blocked either way: SocialService.presence_audience); anyone else shows offline."""
    profiles = await node.accounts.profiles(ids)
    online = await node.presence.online(await node.social.presence_visible(viewer, ids))
    return {uid: UserOut(**p, online=uid in online) for uid, p in profiles.items()}


async def _user_out(node: Node, viewer: int, uid: int) -> UserOut:
    """One user's card as ``viewer`` sees it; a user that does not exist is a 404, never a KeyError (a 500)."""
    out = (await _users_out(node, viewer, [uid])).get(uid)
    if out is None:
        raise WsimError(ErrorCode.NOT_FOUND, "no such user")
    return out


def _request_out(r: FriendRequest, sender: UserOut, recipient: UserOut) -> FriendRequestOut:
    return FriendRequestOut.model_validate(
        {
            "id": str(r.id),
            "status": r.status,
            "message": r.message,
            "created": r.created_ms,
            "from": sender,
            "to": recipient,
        }
    )


@router.get("/users/me", response_model=UserOut)
async def me(principal: PrincipalDep, node: NodeDep) -> UserOut:
    return await _user_out(node, principal.user_id, principal.user_id)


@router.patch("/users/me", response_model=UserOut)
async def update_me(body: ProfileIn, principal: PrincipalDep, node: NodeDep) -> UserOut:
    avatar = None
    if body.avatar_file is not None:
        avatar = (await node.files.authorize(principal.user_id, ident(body.avatar_file, "file"))).id
    await node.accounts.update_profile(
        principal.user_id, display_name=body.display_name, bio=body.bio, avatar_file=avatar
    )
    return await _user_out(node, principal.user_id, principal.user_id)


@router.get("/users/search", response_model=UsersOut)
async def search(
    principal: PrincipalDep,
    node: NodeDep,
    q: Annotated[str, Query(min_length=1, max_length=64)],
    limit: Annotated[int, Query(ge=1, le=50)] = 20,
) -> UsersOut:
    """Username prefix or display-name substring."""
    found = await node.accounts.search(q, limit)
    out = await _users_out(node, principal.user_id, [u.id for u in found])
    return UsersOut(users=[out[u.id] for u in found if u.id in out])


@router.get("/users/{user_id:id}", response_model=UserOut)
async def get_user(user_id: UserIdPath, principal: PrincipalDep, node: NodeDep) -> UserOut:
    return await _user_out(node, principal.user_id, ident(user_id, "user"))


# ------------------------------------------------------------------ friends


@router.get("/friends", response_model=FriendsOut, tags=["friends"])
async def list_friends(principal: PrincipalDep, node: NodeDep) -> FriendsOut:
    friends = await node.social.list_friends(principal.user_id)
    ids = [f.user_id for f in friends]
    users = await _users_out(node, principal.user_id, ids)
    online = await node.presence.online(await node.social.presence_visible(principal.user_id, ids))
    return FriendsOut(
        friends=[
            FriendOut(
                user=users[f.user_id],
                remark=f.remark,
                since=f.since_ms,
                online=f.user_id in online,
                devices=online.get(f.user_id, 0),
                conv=direct_conversation(principal.user_id, f.user_id),
            )
            for f in friends
            if f.user_id in users
        ]
    )


@router.get("/friends/requests", response_model=FriendRequestsOut, tags=["friends"])
async def list_requests(principal: PrincipalDep, node: NodeDep) -> FriendRequestsOut:
    reqs = await node.social.list_requests(principal.user_id)
    users = await _users_out(node, principal.user_id, [u for r in reqs for u in (r.from_user, r.to_user)])
    incoming: list[FriendRequestOut] = []
    outgoing: list[FriendRequestOut] = []
    for r in reqs:
        if r.from_user not in users or r.to_user not in users:
            continue
        item = _request_out(r, users[r.from_user], users[r.to_user])
        (incoming if r.to_user == principal.user_id else outgoing).append(item)
    return FriendRequestsOut(incoming=incoming, outgoing=outgoing)


@router.post(
    "/friends/requests",
    status_code=status.HTTP_201_CREATED,
    response_model=FriendRequestOut,
    tags=["friends"],
)
async def request_friend(body: FriendRequestIn, principal: PrincipalDep, node: NodeDep) -> FriendRequestOut:
    """Ask to be friends. If the other user already asked you, this accepts their request instead."""
    r = await node.social.request_friend(principal.user_id, ident(body.user_id, "user"), body.message)
    sender = await _user_out(node, principal.user_id, r.from_user)
    recipient = await _user_out(node, principal.user_id, r.to_user)
    return _request_out(r, sender, recipient)


@router.post("/friends/requests/{request_id:id}/accept", status_code=NO_CONTENT, tags=["friends"])
async def accept(request_id: RequestIdPath, principal: PrincipalDep, node: NodeDep) -> Response:
    await node.social.accept_request(principal.user_id, ident(request_id, "friend request"))
    return Response(status_code=NO_CONTENT)


@router.post("/friends/requests/{request_id:id}/decline", status_code=NO_CONTENT, tags=["friends"])
async def decline(request_id: RequestIdPath, principal: PrincipalDep, node: NodeDep) -> Response:
    await node.social.decline_request(principal.user_id, ident(request_id, "friend request"))
    return Response(status_code=NO_CONTENT)


@router.delete("/friends/{user_id:id}", status_code=NO_CONTENT, tags=["friends"])
async def remove_friend(user_id: UserIdPath, principal: PrincipalDep, node: NodeDep) -> Response:
    await node.social.remove_friend(principal.user_id, ident(user_id, "user"))
    return Response(status_code=NO_CONTENT)


@router.put("/friends/{user_id:id}/remark", status_code=NO_CONTENT, tags=["friends"])
async def set_remark(user_id: UserIdPath, body: RemarkIn, principal: PrincipalDep, node: NodeDep) -> Response:
    """A private alias for a friend, seen only by you."""
    await node.social.set_remark(principal.user_id, ident(user_id, "user"), body.remark)
    return Response(status_code=NO_CONTENT)


# ------------------------------------------------------------------ blocks


@router.get("/blocks", response_model=UsersOut, tags=["friends"])
async def list_blocks(principal: PrincipalDep, node: NodeDep) -> UsersOut:
    ids = await node.social.list_blocked(principal.user_id)
    users = await _users_out(node, principal.user_id, ids)
    return UsersOut(users=[users[i] for i in ids if i in users])


@router.put("/blocks/{user_id:id}", status_code=NO_CONTENT, tags=["friends"])
async def block(user_id: UserIdPath, principal: PrincipalDep, node: NodeDep) -> Response:
    """Their messages to you are refused with the error ``blocked`` (and yours to them, until you unblock)."""
    await node.social.block(principal.user_id, ident(user_id, "user"))
    return Response(status_code=NO_CONTENT)


@router.delete("/blocks/{user_id:id}", status_code=NO_CONTENT, tags=["friends"])
async def unblock(user_id: UserIdPath, principal: PrincipalDep, node: NodeDep) -> Response:
    await node.social.unblock(principal.user_id, ident(user_id, "user"))
    return Response(status_code=NO_CONTENT)
