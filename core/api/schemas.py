"""Request and response bodies of the REST API (they make /openapi.json and /docs)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.protocol.frames import DEVICE_PATTERN, ID_PATTERN

IdStr = Annotated[str, Field(pattern=ID_PATTERN)]
# Names must contain something visible; JSON Schema and pydantic both search (unanchored) for the pattern.
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"\S")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserOut(BaseModel):
    id: str
    username: str
    display_name: str
    bio: str = ""
    avatar_file: str | None = None
    online: bool | None = None


class RegisterIn(_In):
    username: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{3,32}$", description="case-insensitive")]
    password: Annotated[str, Field(min_length=8, max_length=128)]
    display_name: Name | None = None
    device: Annotated[str, Field(pattern=DEVICE_PATTERN)] | None = None


class LoginIn(_In):
    username: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=256)]
    device: Annotated[str, Field(pattern=DEVICE_PATTERN)] | None = None


class RefreshIn(_In):
    refresh_token: Annotated[str, Field(min_length=1, max_length=512)]


class TokensOut(BaseModel):
    user: UserOut
    access_token: str
    access_expires: int
    refresh_token: str
    refresh_expires: int
    session: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the OAuth token type, not a secret


class ProfileIn(_In):
    display_name: Name | None = None
    bio: Annotated[str, Field(max_length=500)] | None = None
    avatar_file: IdStr | None = None


class UsersOut(BaseModel):
    users: list[UserOut]


class FriendOut(BaseModel):
    user: UserOut
    remark: str
    since: int
    online: bool
    devices: int
    conv: str


class FriendsOut(BaseModel):
    friends: list[FriendOut]


class FriendRequestIn(_In):
    user_id: IdStr
    message: Annotated[str, Field(max_length=200)] = ""


class FriendRequestOut(BaseModel):
    id: str
    status: str
    message: str
    created: int
    from_: UserOut = Field(alias="from", serialization_alias="from")
    to: UserOut

    model_config = ConfigDict(populate_by_name=True)


class FriendRequestsOut(BaseModel):
    incoming: list[FriendRequestOut]
    outgoing: list[FriendRequestOut]


class RemarkIn(_In):
    remark: Annotated[str, Field(max_length=64)]


class GroupIn(_In):
    name: Name
    members: Annotated[list[IdStr], Field(max_length=10_000)] = Field(default_factory=list)


class GroupRenameIn(_In):
    name: Name


class MembersIn(_In):
    user_ids: Annotated[list[IdStr], Field(min_length=1, max_length=10_000)]


class RoleIn(_In):
    role: Literal["owner", "admin", "member"]


class MemberOut(BaseModel):
    user: UserOut
    role: str
    joined: int


class GroupOut(BaseModel):
    id: str
    conv: str
    name: str
    owner: str
    created: int
    dissolved: bool
    member_count: int
    members: list[MemberOut] | None = None


class GroupsOut(BaseModel):
    groups: list[GroupOut]


class MembersOut(BaseModel):
    members: list[MemberOut]


class AddedOut(BaseModel):
    added: list[str]


class ConversationOut(BaseModel):
    conv: str
    kind: Literal["direct", "group"]
    last_seq: int
    read_seq: int
    unread: int
    first_seq: int
    last: dict[str, Any] | None
    updated: int
    peer: str | None = None
    remark: str | None = None
    group: str | None = None
    name: str | None = None
    dissolved: bool | None = None


class ConversationsOut(BaseModel):
    conversations: list[ConversationOut]


class HistoryOut(BaseModel):
    conv: str
    messages: list[dict[str, Any]]
    first_seq: int
    has_older: bool = Field(description="readable messages exist before the first of this page")
    has_newer: bool = Field(description="messages exist after the last of this page")


class SearchOut(BaseModel):
    query: str
    messages: list[dict[str, Any]] = Field(description="newest first; each a wire message (docs/protocol.md)")
    next: str | None = Field(description="cursor for the next page (pass as `before`); null on the last page")


class MarkOut(BaseModel):
    delivered: int
    read: int


class ReceiptsOut(BaseModel):
    conv: str
    marks: dict[str, MarkOut]


class FileOut(BaseModel):
    id: str
    name: str
    size: int
    mime: str
    width: int | None
    height: int | None
    thumbnail: bool
    url: str


class FileLinkOut(BaseModel):
    url: str
    thumbnail_url: str | None
    expires: int


class DeadLetterOut(BaseModel):
    id: str
    msg_id: str
    conv: str
    seq: int
    user: str
    device: str
    attempts: int
    reason: str
    created: int


class DeadLettersOut(BaseModel):
    total: int
    items: list[DeadLetterOut]


class HealthOut(BaseModel):
    status: Literal["ok"]
    node: str
    connections: int
    version: str


class StatsOut(BaseModel):
    node: str
    connections: int
    users_online_here: int
    strategies: dict[str, Any]
