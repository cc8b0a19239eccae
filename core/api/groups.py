from __future__ import annotations

from fastapi import APIRouter, Response, status

from core.api.deps import GroupIdPath, NodeDep, PrincipalDep, UserIdPath, error_responses, ident
from core.api.schemas import (
    AddedOut,
    GroupIn,
    GroupOut,
    GroupRenameIn,
    GroupsOut,
    MemberOut,
    MembersIn,
    MembersOut,
    RoleIn,
    UserOut,
)
from core.models import Group, Member, Role
from core.node import Node
from core.types import group_conversation

router = APIRouter(
    prefix="/api/groups", tags=["groups"], responses=error_responses(401, 403, 404, 409, 410, 422)
)
NO_CONTENT = status.HTTP_204_NO_CONTENT


def _group_out(g: Group, members: list[MemberOut] | None = None) -> GroupOut:
    return GroupOut(
        id=str(g.id),
        conv=group_conversation(g.id),
        name=g.name,
        owner=str(g.owner),
        created=g.created_ms,
        dissolved=g.dissolved,
        member_count=g.member_count,
        members=members,
    )


async def _members_out(node: Node, viewer: int, members: list[Member]) -> list[MemberOut]:
    ids = [m.user_id for m in members]
    profiles = await node.accounts.profiles(ids)
    # Group members who are not the viewer's friends show offline: one presence rule (SocialService).
    online = await node.presence.online(await node.social.presence_visible(viewer, ids))
    return [
        MemberOut(
            user=UserOut(**profiles[m.user_id], online=m.user_id in online),
            role=m.role.value,
            joined=m.joined_ms,
        )
        for m in members
        if m.user_id in profiles
    ]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=GroupOut)
async def create_group(body: GroupIn, principal: PrincipalDep, node: NodeDep) -> GroupOut:
    """Create a group with some of your friends; you become its owner."""
    g = await node.social.create_group(principal.user_id, body.name, [ident(m, "user") for m in body.members])
    _, members = await node.social.get_group(principal.user_id, g.id)
    return _group_out(g, await _members_out(node, principal.user_id, members))


@router.get("", response_model=GroupsOut)
async def list_groups(principal: PrincipalDep, node: NodeDep) -> GroupsOut:
    return GroupsOut(groups=[_group_out(g) for g in await node.social.list_groups(principal.user_id)])


@router.get("/{group_id:id}", response_model=GroupOut)
async def get_group(group_id: GroupIdPath, principal: PrincipalDep, node: NodeDep) -> GroupOut:
    g, members = await node.social.get_group(principal.user_id, ident(group_id, "group"))
    return _group_out(g, await _members_out(node, principal.user_id, members))


@router.patch("/{group_id:id}", status_code=NO_CONTENT)
async def rename_group(
    group_id: GroupIdPath, body: GroupRenameIn, principal: PrincipalDep, node: NodeDep
) -> Response:
    await node.social.rename_group(principal.user_id, ident(group_id, "group"), body.name)
    return Response(status_code=NO_CONTENT)


@router.post("/{group_id:id}/dissolve", status_code=NO_CONTENT)
async def dissolve_group(group_id: GroupIdPath, principal: PrincipalDep, node: NodeDep) -> Response:
    """Owner only. The group is not deleted: history stays readable by the members (and the group by GET), but
    nobody can send any more. Hence a POST action, not DELETE."""
    await node.social.dissolve_group(principal.user_id, ident(group_id, "group"))
    return Response(status_code=NO_CONTENT)


@router.get("/{group_id:id}/members", response_model=MembersOut)
async def list_members(group_id: GroupIdPath, principal: PrincipalDep, node: NodeDep) -> MembersOut:
    members = await node.social.members(principal.user_id, ident(group_id, "group"))
    return MembersOut(members=await _members_out(node, principal.user_id, members))


@router.post("/{group_id:id}/members", response_model=AddedOut)
async def add_members(
    group_id: GroupIdPath, body: MembersIn, principal: PrincipalDep, node: NodeDep
) -> AddedOut:
    """Owner or admin adds friends of theirs; new members read history from their joining onward."""
    added = await node.social.add_members(
        principal.user_id, ident(group_id, "group"), [ident(u, "user") for u in body.user_ids]
    )
    return AddedOut(added=[str(u) for u in added])


@router.delete("/{group_id:id}/members/{user_id:id}", status_code=NO_CONTENT)
async def remove_member(
    group_id: GroupIdPath, user_id: UserIdPath, principal: PrincipalDep, node: NodeDep
) -> Response:
    await node.social.remove_member(principal.user_id, ident(group_id, "group"), ident(user_id, "user"))
    return Response(status_code=NO_CONTENT)


@router.put("/{group_id:id}/members/{user_id:id}/role", status_code=NO_CONTENT)
async def set_role(
    group_id: GroupIdPath, user_id: UserIdPath, body: RoleIn, principal: PrincipalDep, node: NodeDep
) -> Response:
    """Owner only. Making someone ``owner`` transfers ownership (you become an admin)."""
    await node.social.set_role(
        principal.user_id, ident(group_id, "group"), ident(user_id, "user"), Role(body.role)
    )
    return Response(status_code=NO_CONTENT)


@router.post("/{group_id:id}/leave", status_code=NO_CONTENT)
async def leave(group_id: GroupIdPath, principal: PrincipalDep, node: NodeDep) -> Response:
    await node.social.leave_group(principal.user_id, ident(group_id, "group"))
    return Response(status_code=NO_CONTENT)
