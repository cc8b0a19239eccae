"""Domain records passed between services and stores. Plain dataclasses: no I/O, no validation beyond types."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


class MessageKind(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    FILE = "file"
    # Written by the server, never by a client:
    RECALL = "recall"  # body {"id": "<recalled message id>", "seq": n}; makes a recall reach offline devices
    SYSTEM = "system"  # body {"event": "...", ...}: group created/renamed/member added/removed/...


CLIENT_KINDS = frozenset({MessageKind.TEXT, MessageKind.IMAGE, MessageKind.FILE})


@dataclass(slots=True)
class User:
    id: int
    username: str
    display_name: str
    password_hash: str
    created_ms: int
    bio: str = ""
    avatar_file: int | None = None

    def public(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "username": self.username,
            "display_name": self.display_name,
            "bio": self.bio,
            "avatar_file": None if self.avatar_file is None else str(self.avatar_file),
        }


@dataclass(slots=True)
class RefreshToken:
    token_hash: str
    user_id: int
    family: str  # one login = one family; rotation keeps the family, reuse revokes it
    expires_ms: int
    used: bool = False
    revoked: bool = False
    device: str | None = None
    # When it was first exchanged (wall ms; 0: never). A second use shortly after is a concurrent tab, not theft.
    used_ms: int = 0


@dataclass(slots=True)
class FriendRequest:
    id: int
    from_user: int
    to_user: int
    message: str
    status: str  # pending | accepted | declined
    created_ms: int


@dataclass(slots=True)
class Friend:
    user_id: int
    remark: str
    since_ms: int


@dataclass(slots=True)
class Group:
    id: int
    name: str
    owner: int
    created_ms: int
    dissolved: bool = False
    member_count: int = 0


@dataclass(slots=True)
class Member:
    user_id: int
    role: Role
    joined_ms: int
    # First sequence number this member may read (history is limited to membership time).
    joined_seq: int = 1


@dataclass(slots=True)
class MessageDraft:
    """What the messaging service asks a store to append; the store assigns ``seq``."""

    id: int
    conv: str
    sender: int
    device: str
    cmid: str
    kind: MessageKind
    body: dict[str, Any]
    ts_ms: int
    # Idempotency key chosen by the dedup strategy; None lets every resend be stored again (dedup "off").
    dedup_key: str | None


@dataclass(slots=True)
class Message:
    id: int
    conv: str
    seq: int
    sender: int
    device: str
    cmid: str
    kind: MessageKind
    body: dict[str, Any]
    ts_ms: int
    recalled: bool = False

    def wire(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "conv": self.conv,
            "seq": self.seq,
            "from": str(self.sender),
            "device": self.device,
            "cmid": self.cmid,
            "kind": self.kind.value,
            "body": {} if self.recalled else self.body,
            "ts": self.ts_ms,
            "recalled": self.recalled,
        }

    @classmethod
    def from_wire(cls, w: dict[str, Any]) -> Message:
        """The inverse of :meth:`wire`, for stores that keep messages in their wire form (inbox copies, cold
        archive objects); ids are read from strings or integers alike."""
        return cls(
            int(w["id"]),
            w["conv"],
            int(w["seq"]),
            int(w["from"]),
            w["device"],
            w["cmid"],
            MessageKind(w["kind"]),
            w["body"],
            int(w["ts"]),
            bool(w["recalled"]),
        )


@dataclass(slots=True)
class AppendResult:
    message: Message
    created: bool  # False: the dedup key already existed and ``message`` is the original


@dataclass(slots=True)
class Marks:
    """Per (conversation, user) cumulative receipts."""

    delivered: int = 0
    read: int = 0


@dataclass(slots=True)
class ConversationHead:
    conv: str
    last_seq: int
    last: Message | None


@dataclass(slots=True)
class DeadLetter:
    id: int
    msg_id: int
    conv: str
    seq: int
    user_id: int
    device: str
    attempts: int
    reason: str
    created_ms: int


@dataclass(slots=True)
class FileMeta:
    id: int
    owner: int
    name: str
    size: int
    mime: str
    storage_key: str
    created_ms: int
    width: int | None = None
    height: int | None = None
    thumb_key: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "size": self.size,
            "mime": self.mime,
            "width": self.width,
            "height": self.height,
            "thumbnail": self.thumb_key is not None,
            "url": f"/api/files/{self.id}",
        }


@dataclass(frozen=True, slots=True)
class Principal:
    """Who an access token proves a caller is (verified by the accounts service)."""

    user_id: int
    family: str  # login session id ("sid" claim)
    exp_ms: int


@dataclass(frozen=True, slots=True)
class Track:
    """The stored message an encoded ``message.new`` push carries, so a link can track its delivery."""

    msg_id: int
    conv: str
    seq: int
