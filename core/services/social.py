"""Friends, blocks, groups and the membership rules every send and read is checked against.

Membership answers are read through the cache ("friends", "blocks", "group", "members", "convs") because they sit
on the hot path of every message; every write here updates the store first and then deletes the affected keys.
Group changes are also posted into the group's conversation as ``system`` messages, so they reach offline
members through the same ordered, synced stream as chat messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from core.clock import Clock
from core.config import LimitsConfig
from core.errors import ErrorCode, WsimError
from core.models import Friend, FriendRequest, Group, Member, Role
from core.protocol.codec import encode
from core.protocol.frames import Notify
from core.routing import Router
from core.services.writer import SystemPoster
from core.types import direct_conversation, group_conversation, parse_conversation
from strategies.cache.base import Cache, cached
from strategies.ids.base import IdGenerator
from strategies.store.base import MessageStore, SocialStore


def _check_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 64:
        raise WsimError(ErrorCode.INVALID, "name: 1 to 64 characters")
    return name


@dataclass(eq=False)
class SocialService:
    users: SocialStore
    messages: MessageStore
    ids: IdGenerator
    clock: Clock
    cache: Cache
    router: Router
    limits: LimitsConfig
    system: SystemPoster

    async def _notify(self, users: Sequence[int], event: str, data: dict[str, Any]) -> None:
        await self.router.deliver(users, encode(Notify(event=event, data=data)))

    async def _post(self, conv: str, actor: int, body: dict[str, Any], extra: Sequence[int] = ()) -> None:
        """Announce a change in ``conv`` to its members as they are now, plus ``extra`` (a removed member)."""
        members = await self.conversation_members(conv)
        await self.system.post_system(conv, actor, body, list(dict.fromkeys([*members, *extra])))

    async def _require_user(self, user_id: int) -> None:
        if await self.users.get_user(user_id) is None:
            raise WsimError(ErrorCode.NOT_FOUND, f"no user {user_id}")

    # ================================================================ cached reads
    async def friend_ids(self, user_id: int) -> list[int]:
        async def load() -> list[int]:
            return [f.user_id for f in await self.users.list_friends(user_id)]

        result: list[int] = await cached(self.cache, "friends", str(user_id), load)
        return result

    async def blocked_ids(self, user_id: int) -> list[int]:
        async def load() -> list[int]:
            return await self.users.list_blocked(user_id)

        result: list[int] = await cached(self.cache, "blocks", str(user_id), load)
        return result

    # ================================================================ presence visibility
    async def presence_audience(self, user_id: int) -> list[int]:
        """Who may see ``user_id``'s online status: friends, unless either side blocked the other. The one rule
        behind presence frames and every ``online`` field of the REST API (issue 14, M3)."""
        mine = set(await self.blocked_ids(user_id))
        return [
            f
            for f in await self.friend_ids(user_id)
            if f not in mine and user_id not in await self.blocked_ids(f)
        ]

    async def presence_visible(self, viewer: int, users: Iterable[int]) -> set[int]:
        """The subset of ``users`` whose online status ``viewer`` may see (by :meth:`presence_audience`'s rule;
        one's own status is always visible)."""
        friends = set(await self.friend_ids(viewer))
        mine = set(await self.blocked_ids(viewer))
        return {
            u
            for u in users
            if u == viewer or (u in friends and u not in mine and viewer not in await self.blocked_ids(u))
        }

    async def group_info(self, group_id: int) -> dict[str, Any] | None:
        async def load() -> dict[str, Any] | None:
            g = await self.users.get_group(group_id)
            if g is None:
                return None
            return {"id": g.id, "name": g.name, "owner": g.owner, "dissolved": g.dissolved}

        result: dict[str, Any] | None = await cached(self.cache, "group", str(group_id), load)
        return result

    async def group_members(self, group_id: int) -> dict[str, list[Any]]:
        """{str(user id): [role, joined_seq]} (string keys keep the value JSON-compatible for every tier)."""

        async def load() -> dict[str, list[Any]]:
            return {
                str(m.user_id): [m.role.value, m.joined_seq] for m in await self.users.get_members(group_id)
            }

        result: dict[str, list[Any]] = await cached(self.cache, "members", str(group_id), load)
        return result

    async def user_conversations(self, user_id: int) -> list[str]:
        async def load() -> list[str]:
            convs: list[str] = [direct_conversation(user_id, f) for f in await self.friend_ids(user_id)]
            convs += [group_conversation(g.id) for g in await self.users.list_user_groups(user_id)]
            return convs

        result: list[str] = await cached(self.cache, "convs", str(user_id), load)
        return result

    async def _invalidate_friendship(self, *users: int) -> None:
        for u in users:
            await self.cache.delete("friends", str(u))
            await self.cache.delete("convs", str(u))

    async def _invalidate_group(self, group_id: int, users: Sequence[int] = ()) -> None:
        await self.cache.delete("group", str(group_id))
        await self.cache.delete("members", str(group_id))
        for u in users:
            await self.cache.delete("convs", str(u))

    # ================================================================ authorization
    def _parse(self, conv: str) -> tuple[str, tuple[int, ...]]:
        try:
            return parse_conversation(conv)
        except ValueError as exc:
            raise WsimError(ErrorCode.INVALID, str(exc)) from None

    async def conversation_members(self, conv: str) -> list[int]:
        kind, parts = self._parse(conv)
        if kind == "d":
            return list(parts)
        return [int(u) for u in await self.group_members(parts[0])]

    async def authorize_send(self, user_id: int, conv: str) -> list[int]:
        """Raise unless ``user_id`` may post to ``conv``; return the conversation's members."""
        kind, parts = self._parse(conv)
        if kind == "d":
            if user_id not in parts:
                raise WsimError(ErrorCode.NOT_MEMBER, "not a participant of this conversation")
            peer = parts[0] if parts[1] == user_id else parts[1]
            if peer not in await self.friend_ids(user_id):
                raise WsimError(ErrorCode.NOT_FRIENDS, "you can only message friends")
            if user_id in await self.blocked_ids(peer):
                raise WsimError(ErrorCode.BLOCKED, "this user has blocked you")
            if peer in await self.blocked_ids(user_id):
                raise WsimError(ErrorCode.BLOCKED, "you have blocked this user; unblock to send")
            return list(parts)
        info = await self.group_info(parts[0])
        if info is None:  # the same answer as someone else's group (issue 14, L3: no existence oracle)
            raise WsimError(ErrorCode.NOT_MEMBER, "not a member of this group")
        members = await self.group_members(parts[0])
        if str(user_id) not in members:
            raise WsimError(ErrorCode.NOT_MEMBER, "not a member of this group")
        if info["dissolved"]:
            raise WsimError(ErrorCode.GROUP_DISSOLVED, "this group has been dissolved")
        return [int(u) for u in members]

    async def first_readable_seq(self, user_id: int, conv: str) -> int:
        """The first seq ``user_id`` may read in ``conv`` (history is limited to membership time)."""
        kind, parts = self._parse(conv)
        if kind == "d":
            if user_id not in parts:
                raise WsimError(ErrorCode.NOT_MEMBER, "not a participant of this conversation")
            return 1
        member = (await self.group_members(parts[0])).get(str(user_id))
        if member is None:
            raise WsimError(ErrorCode.NOT_MEMBER, "not a member of this group")
        return int(member[1])

    # ================================================================ friends
    async def request_friend(self, user_id: int, target: int, message: str) -> FriendRequest:
        if target == user_id:
            raise WsimError(ErrorCode.INVALID, "you cannot befriend yourself")
        if len(message) > 200:
            raise WsimError(ErrorCode.INVALID, "message: at most 200 characters")
        await self._require_user(target)
        if target in await self.friend_ids(user_id):
            raise WsimError(ErrorCode.ALREADY_EXISTS, "already friends")
        if user_id in await self.blocked_ids(target):
            raise WsimError(ErrorCode.BLOCKED, "this user has blocked you")
        reverse = await self.users.pending_request(target, user_id)
        if reverse is not None:  # they already asked us: asking back accepts
            await self.accept_request(user_id, reverse.id)
            return FriendRequest(
                reverse.id,
                reverse.from_user,
                reverse.to_user,
                reverse.message,
                "accepted",
                reverse.created_ms,
            )
        existing = await self.users.pending_request(user_id, target)
        if existing is not None:
            return existing
        now = self.clock.wall_ms()
        req = FriendRequest(self.ids.next_id(now), user_id, target, message, "pending", now)
        await self.users.add_friend_request(req)
        await self._notify([target], "friend.request", request_wire(req))
        return req

    async def list_requests(self, user_id: int) -> list[FriendRequest]:
        return await self.users.list_friend_requests(user_id)

    async def _pending_for(self, user_id: int, request_id: int) -> FriendRequest:
        req = await self.users.get_friend_request(request_id)
        if req is None or req.to_user != user_id:
            raise WsimError(ErrorCode.NOT_FOUND, "no such friend request")
        if req.status != "pending":
            raise WsimError(ErrorCode.ALREADY_EXISTS, f"request already {req.status}")
        return req

    async def accept_request(self, user_id: int, request_id: int) -> None:
        req = await self._pending_for(user_id, request_id)
        await self.users.set_friend_request_status(req.id, "accepted")
        await self.users.add_friendship(req.from_user, req.to_user, self.clock.wall_ms())
        await self._invalidate_friendship(req.from_user, req.to_user)
        conv = direct_conversation(req.from_user, req.to_user)
        await self._post(
            conv, user_id, {"event": "friend.accepted", "users": [str(req.from_user), str(req.to_user)]}
        )
        await self._notify(
            [req.from_user, req.to_user],
            "friend.accepted",
            {"request": str(req.id), "users": [str(req.from_user), str(req.to_user)], "conv": conv},
        )

    async def decline_request(self, user_id: int, request_id: int) -> None:
        req = await self._pending_for(user_id, request_id)
        await self.users.set_friend_request_status(req.id, "declined")
        await self._notify([req.from_user], "friend.declined", {"request": str(req.id), "by": str(user_id)})

    async def remove_friend(self, user_id: int, friend: int) -> None:
        if not await self.users.remove_friendship(user_id, friend):
            raise WsimError(ErrorCode.NOT_FOUND, "not friends")
        await self._invalidate_friendship(user_id, friend)
        await self._notify([user_id, friend], "friend.removed", {"users": [str(user_id), str(friend)]})

    async def list_friends(self, user_id: int) -> list[Friend]:
        return await self.users.list_friends(user_id)

    async def set_remark(self, user_id: int, friend: int, remark: str) -> None:
        if len(remark) > 64:
            raise WsimError(ErrorCode.INVALID, "remark: at most 64 characters")
        if not await self.users.set_remark(user_id, friend, remark.strip()):
            raise WsimError(ErrorCode.NOT_FOUND, "not friends")

    async def block(self, user_id: int, target: int) -> None:
        if target == user_id:
            raise WsimError(ErrorCode.INVALID, "you cannot block yourself")
        await self._require_user(target)
        await self.users.block(user_id, target, self.clock.wall_ms())
        await self.cache.delete("blocks", str(user_id))

    async def unblock(self, user_id: int, target: int) -> None:
        if not await self.users.unblock(user_id, target):
            raise WsimError(ErrorCode.NOT_FOUND, "not blocked")
        await self.cache.delete("blocks", str(user_id))

    async def list_blocked(self, user_id: int) -> list[int]:
        return await self.blocked_ids(user_id)

    # ================================================================ groups
    async def _group_for(self, group_id: int) -> dict[str, Any]:
        info = await self.group_info(group_id)
        if info is None:
            raise WsimError(ErrorCode.NOT_FOUND, "no such group")
        return info

    async def _role_of(self, group_id: int, user_id: int) -> Role:
        member = (await self.group_members(group_id)).get(str(user_id))
        if member is None:
            raise WsimError(ErrorCode.NOT_MEMBER, "not a member of this group")
        return Role(member[0])

    async def _require_manager(self, group_id: int, user_id: int) -> Role:
        info = await self._group_for(group_id)
        if info["dissolved"]:
            raise WsimError(ErrorCode.GROUP_DISSOLVED, "this group has been dissolved")
        role = await self._role_of(group_id, user_id)
        if role is Role.MEMBER:
            raise WsimError(ErrorCode.FORBIDDEN, "only the owner or an admin can do this")
        return role

    async def _check_invitees(self, inviter: int, user_ids: Sequence[int]) -> list[int]:
        friends = set(await self.friend_ids(inviter))
        out: list[int] = []
        for uid in dict.fromkeys(user_ids):
            if uid == inviter:
                continue
            if uid not in friends:
                raise WsimError(ErrorCode.NOT_FRIENDS, f"user {uid} is not your friend")
            out.append(uid)
        return out

    async def create_group(self, owner: int, name: str, member_ids: Sequence[int]) -> Group:
        name = _check_name(name)
        invitees = await self._check_invitees(owner, member_ids)
        if len(invitees) + 1 > self.limits.max_group_members:
            raise WsimError(
                ErrorCode.GROUP_FULL, f"a group holds at most {self.limits.max_group_members} members"
            )
        now = self.clock.wall_ms()
        group = Group(self.ids.next_id(now), name, owner, now, False, len(invitees) + 1)
        members = [Member(owner, Role.OWNER, now, 1)] + [Member(u, Role.MEMBER, now, 1) for u in invitees]
        await self.users.create_group(group, members)
        await self._invalidate_group(group.id, [owner, *invitees])
        await self._post(
            group_conversation(group.id),
            owner,
            {"event": "group.created", "name": name, "users": [str(u) for u in invitees]},
        )
        await self._notify(
            [owner, *invitees],
            "group.added",
            {"group": str(group.id), "conv": group_conversation(group.id), "name": name},
        )
        return group

    async def get_group(self, user_id: int, group_id: int) -> tuple[Group, list[Member]]:
        await self._role_of(group_id, user_id)
        group = await self.users.get_group(group_id)
        if group is None:
            raise WsimError(ErrorCode.NOT_FOUND, "no such group")
        return group, await self.users.get_members(group_id)

    async def list_groups(self, user_id: int) -> list[Group]:
        return await self.users.list_user_groups(user_id)

    async def rename_group(self, actor: int, group_id: int, name: str) -> None:
        name = _check_name(name)
        await self._require_manager(group_id, actor)
        await self.users.rename_group(group_id, name)
        await self._invalidate_group(group_id)
        await self._post(group_conversation(group_id), actor, {"event": "group.renamed", "name": name})

    async def add_members(self, actor: int, group_id: int, user_ids: Sequence[int]) -> list[int]:
        await self._require_manager(group_id, actor)
        invitees = await self._check_invitees(actor, user_ids)
        current = await self.group_members(group_id)
        new = [u for u in invitees if str(u) not in current]
        if not new:
            return []
        if len(current) + len(new) > self.limits.max_group_members:
            raise WsimError(
                ErrorCode.GROUP_FULL, f"a group holds at most {self.limits.max_group_members} members"
            )
        conv = group_conversation(group_id)
        heads = await self.messages.heads([conv])
        # New members read from the message announcing them onward (history limited to membership time).
        joined_seq = (heads[conv].last_seq if conv in heads else 0) + 1
        now = self.clock.wall_ms()
        added = await self.users.add_members(group_id, [Member(u, Role.MEMBER, now, joined_seq) for u in new])
        await self._invalidate_group(group_id, added)
        if added:
            await self._post(conv, actor, {"event": "group.members_added", "users": [str(u) for u in added]})
            info = await self._group_for(group_id)
            await self._notify(
                added, "group.added", {"group": str(group_id), "conv": conv, "name": info["name"]}
            )
        return added

    async def remove_member(self, actor: int, group_id: int, user_id: int) -> None:
        actor_role = await self._require_manager(group_id, actor)
        target_role = await self._role_of(group_id, user_id)
        if user_id == actor:
            raise WsimError(ErrorCode.INVALID, "use leave to leave a group")
        if target_role is Role.OWNER or (actor_role is Role.ADMIN and target_role is Role.ADMIN):
            raise WsimError(ErrorCode.FORBIDDEN, "you cannot remove this member")
        conv = group_conversation(group_id)
        # Remove, then announce (to the removed member too, as an extra recipient): announcing first let messages
        # stored between the notice and the removal reach the removed member after its notice (found by the
        # fault campaign, member_removed).
        await self.users.remove_member(group_id, user_id)
        await self._invalidate_group(group_id, [user_id])
        await self._post(conv, actor, {"event": "group.member_removed", "users": [str(user_id)]}, [user_id])
        await self._notify([user_id], "group.removed", {"group": str(group_id), "conv": conv})

    async def set_role(self, actor: int, group_id: int, user_id: int, role: Role) -> None:
        await self._require_manager(group_id, actor)
        if await self._role_of(group_id, actor) is not Role.OWNER:
            raise WsimError(ErrorCode.FORBIDDEN, "only the owner can change roles")
        if user_id == actor:
            raise WsimError(ErrorCode.INVALID, "transfer ownership by making another member the owner")
        await self._role_of(group_id, user_id)
        if role is Role.OWNER:  # ownership transfer: the old owner becomes an admin
            await self.users.set_role(group_id, actor, Role.ADMIN)
        await self.users.set_role(group_id, user_id, role)
        await self._invalidate_group(group_id)
        await self._post(
            group_conversation(group_id),
            actor,
            {"event": "group.role_changed", "users": [str(user_id)], "role": role.value},
        )

    async def leave_group(self, user_id: int, group_id: int) -> None:
        await self._group_for(group_id)
        if await self._role_of(group_id, user_id) is Role.OWNER:
            raise WsimError(
                ErrorCode.FORBIDDEN, "the owner must transfer ownership or dissolve the group first"
            )
        conv = group_conversation(group_id)
        await self._post(conv, user_id, {"event": "group.member_left", "users": [str(user_id)]})
        await self.users.remove_member(group_id, user_id)
        await self._invalidate_group(group_id, [user_id])

    async def dissolve_group(self, actor: int, group_id: int) -> None:
        info = await self._group_for(group_id)
        if info["dissolved"]:
            raise WsimError(ErrorCode.GROUP_DISSOLVED, "already dissolved")
        if await self._role_of(group_id, actor) is not Role.OWNER:
            raise WsimError(ErrorCode.FORBIDDEN, "only the owner can dissolve the group")
        await self._post(group_conversation(group_id), actor, {"event": "group.dissolved"})
        await self.users.dissolve_group(group_id)
        await self._invalidate_group(group_id)

    async def members(self, user_id: int, group_id: int) -> list[Member]:
        await self._role_of(group_id, user_id)
        return await self.users.get_members(group_id)


def request_wire(req: FriendRequest) -> dict[str, Any]:
    return {
        "id": str(req.id),
        "from": str(req.from_user),
        "to": str(req.to_user),
        "message": req.message,
        "status": req.status,
        "created": req.created_ms,
    }
