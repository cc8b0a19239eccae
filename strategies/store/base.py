"""Durable stores. Two roles, so structured data and messages can live in different databases (the plan's
hybrid storage: MySQL for users/friends/groups, MongoDB for messages):

* :class:`UserStore`: users, login sessions and refresh tokens, friends, blocks, groups and membership, files.
  One backend implements it whole (one database, one composition-root line), but it is the union of smaller roles,
  and a service depends on the roles it uses: :class:`UserDirectory`, :class:`LoginSessions`,
  :class:`SocialGraph`, :class:`GroupStore`, :class:`FileCatalog` (and :class:`AccountStore`,
  :class:`SocialStore`, the unions the account and social services need).
* :class:`MessageStore`: messages with their per-conversation sequence numbers, receipts (delivered/read marks)
  and dead letters.

Shared contract (every implementation passes tests/contract/test_store_contract.py):

* Durability: a call returns only after its write is durable under the backend's configured guarantee (SQLite
  WAL commit, MySQL commit, MongoDB write concern). The messaging service acknowledges "sent" after ``append``
  returns, never before.
* Sequence numbers: ``append`` gives each conversation's messages seq 1, 2, 3... with no repeat and no step back,
  even across restarts and concurrent writers on several nodes (the store is the truth; no cache owns a counter).
* Idempotency: a draft whose ``dedup_key`` is already stored is not stored again; ``append`` returns the original
  with ``created=False``.
* Marks are monotonic: setting a lower delivered/read mark than the stored one is a no-op.
* Errors: a backend that is unreachable raises :class:`StoreUnavailable` (the client gets a retryable error and
  resends with the same client message id); it never acknowledges a write it did not make.

Every message store also implements :class:`TierableStore` (moving old messages between tiers, see
strategies/store/tiered.py); the contract suite checks it for every registered backend.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from core.models import (
    AppendResult,
    ConversationHead,
    DeadLetter,
    FileMeta,
    Friend,
    FriendRequest,
    Group,
    Marks,
    Member,
    Message,
    MessageDraft,
    RefreshToken,
    Role,
    User,
)


class StoreUnavailable(Exception):  # noqa: N818 - reads better at raise sites than "...Error"
    """The backend cannot be reached or refused the operation for a transient reason."""


class DuplicateError(Exception):
    """A unique constraint (username, friendship, membership...) was violated."""


class UserDirectory(Protocol):
    """Users and their profiles."""

    async def create_user(self, user: User) -> None:
        """Raises DuplicateError if the (lower-cased) username exists."""
        ...

    async def get_user(self, user_id: int) -> User | None: ...

    async def get_users(self, user_ids: Iterable[int]) -> dict[int, User]: ...

    async def get_user_by_name(self, username: str) -> User | None: ...

    async def update_user(
        self,
        user_id: int,
        *,
        display_name: str | None = None,
        bio: str | None = None,
        avatar_file: int | None = None,
    ) -> User | None: ...

    async def search_users(self, query: str, limit: int) -> list[User]:
        """Username prefix or display-name substring, case-insensitive."""
        ...


class LoginSessions(Protocol):
    """Login sessions (one per login, a token family) and their refresh tokens."""

    async def create_session(
        self, family: str, user_id: int, device: str | None, created_ms: int
    ) -> None: ...

    async def session_active(self, family: str) -> bool: ...

    async def session_user(self, family: str) -> int | None:
        """The user of an active (not revoked) login session; None if unknown or revoked."""
        ...

    async def revoke_session(self, family: str) -> int | None:
        """Revoke a login session; returns its user id (None if unknown)."""
        ...

    async def add_refresh_token(self, token: RefreshToken) -> None: ...

    async def claim_refresh_token(
        self, token_hash: str, now_ms: int
    ) -> tuple[RefreshToken | None, bool, User | None]:
        """In one transaction on the primary: read the token, its session and its user, and mark the token used at
        ``now_ms`` only if the refresh can succeed (not used, session not revoked, not expired at ``now_ms``, user
        exists). Returns (token, True, user) for that first claim; (token, False, user) otherwise (``used_ms``
        says when it was used: the caller tells a concurrent tab from a replay); (None, False, None) if unknown.
        A refresh that fails therefore never spends the token, and no part of it reads a replica."""
        ...


class SocialGraph(Protocol):
    """Friend requests, friendships (both directions) and blocks."""

    async def add_friend_request(self, request: FriendRequest) -> None: ...

    async def get_friend_request(self, request_id: int) -> FriendRequest | None: ...

    async def pending_request(self, from_user: int, to_user: int) -> FriendRequest | None: ...

    async def list_friend_requests(self, user_id: int) -> list[FriendRequest]:
        """Pending requests to or from the user, newest first."""
        ...

    async def set_friend_request_status(self, request_id: int, status: str) -> None: ...

    async def add_friendship(self, a: int, b: int, since_ms: int) -> None:
        """Both directions; no-op if already friends."""
        ...

    async def remove_friendship(self, a: int, b: int) -> bool: ...

    async def list_friends(self, user_id: int) -> list[Friend]: ...

    async def are_friends(self, a: int, b: int) -> bool: ...

    async def set_remark(self, user_id: int, friend_id: int, remark: str) -> bool: ...

    async def block(self, user_id: int, target: int, at_ms: int) -> None: ...

    async def unblock(self, user_id: int, target: int) -> bool: ...

    async def list_blocked(self, user_id: int) -> list[int]: ...

    async def is_blocked(self, blocker: int, target: int) -> bool: ...


class GroupStore(Protocol):
    """Groups and their membership."""

    async def create_group(self, group: Group, members: Sequence[Member]) -> None: ...

    async def get_group(self, group_id: int) -> Group | None: ...

    async def rename_group(self, group_id: int, name: str) -> None: ...

    async def dissolve_group(self, group_id: int) -> None: ...

    async def add_members(self, group_id: int, members: Sequence[Member]) -> list[int]:
        """Adds those not yet members; returns the ids actually added."""
        ...

    async def remove_member(self, group_id: int, user_id: int) -> bool: ...

    async def set_role(self, group_id: int, user_id: int, role: Role) -> bool: ...

    async def get_members(self, group_id: int) -> list[Member]: ...

    async def get_member(self, group_id: int, user_id: int) -> Member | None: ...

    async def list_user_groups(self, user_id: int) -> list[Group]: ...


class FileCatalog(Protocol):
    """Uploaded files' metadata and the conversations that reference each (who may read it)."""

    async def add_file(self, meta: FileMeta) -> None: ...

    async def get_file(self, file_id: int) -> FileMeta | None: ...

    async def add_file_ref(self, file_id: int, conv: str) -> None: ...

    async def file_convs(self, file_id: int) -> list[str]: ...


class AccountStore(UserDirectory, LoginSessions, Protocol):
    """What the account service uses: registration, login, refresh (which reads the user with the token)."""


class SocialStore(UserDirectory, SocialGraph, GroupStore, Protocol):
    """What the social service uses: friends and groups, and the users they name."""


class UserStore(UserDirectory, LoginSessions, SocialGraph, GroupStore, FileCatalog, Protocol):
    """Every user-side role in one database: what a backend implements and the composition root builds."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class MessageStore(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def append(self, draft: MessageDraft) -> AppendResult:
        """Allocate the next seq of ``draft.conv`` and store durably (see the module contract)."""
        ...

    async def get_message(self, msg_id: int) -> Message | None: ...

    async def messages_after(self, conv: str, after_seq: int, limit: int) -> list[Message]:
        """Ascending seq, seq > after_seq, at most ``limit``."""
        ...

    async def messages_before(self, conv: str, before_seq: int, limit: int) -> list[Message]:
        """The ``limit`` messages just below ``before_seq``, in ascending seq."""
        ...

    async def heads(self, convs: Iterable[str]) -> dict[str, ConversationHead]:
        """Last seq and last message per conversation (conversations with no message are omitted)."""
        ...

    async def mark_recalled(self, msg_id: int) -> bool: ...

    async def set_marks(self, conv: str, user_id: int, *, delivered: int = 0, read: int = 0) -> None:
        """Raise the user's marks in ``conv`` to at least these values; returns once written."""
        ...

    def queue_marks(self, conv: str, user_id: int, *, delivered: int = 0, read: int = 0) -> None:
        """Like ``set_marks`` but fire-and-forget: written with the next batch, a failure is logged. For the hot
        path (every delivered ack): a lost mark only delays an unread count or a receipt, never a message."""
        ...

    async def get_marks(self, conv: str) -> dict[int, Marks]:
        """Every user's marks in ``conv``."""
        ...

    async def user_marks(self, user_id: int, convs: Iterable[str]) -> dict[str, Marks]: ...

    async def add_dead_letter(self, letter: DeadLetter) -> None: ...

    async def list_dead_letters(self, limit: int, offset: int) -> list[DeadLetter]: ...

    async def count_dead_letters(self) -> int: ...

    async def search_messages(
        self, windows: Mapping[str, int], query: str, before_id: int | None, limit: int
    ) -> list[Message]:
        """Messages whose text contains ``query`` (substring; ASCII case-insensitive), newest (highest id) first.

        Only conversations in ``windows`` are searched, and in each only seq >= ``windows[conv]`` (the caller's
        readable window); recalled messages never match. ``before_id`` pages: only ids below it. The index may
        lag a commit by the bounded amount the implementation documents; what it returns is always re-checked
        against the message row (a recalled message never comes back, even from a stale index)."""
        ...


class TierableStore(MessageStore, Protocol):
    """What the tier job needs from a message store acting as a source (hot, warm) or a destination (warm).

    Idempotency is the interrupt-and-resume argument: ``import_messages`` of a message already present (same id)
    is a no-op, ``delete_messages`` of an absent id is a no-op, and a conversation's sequence counter never moves
    back when its messages leave (the next append still gets ``last_seq + 1``).
    """

    async def oldest(self, before_ts_ms: int, limit: int) -> list[Message]:
        """Up to ``limit`` messages with ``ts_ms < before_ts_ms``, oldest first."""
        ...

    async def import_messages(self, messages: Sequence[Message]) -> int:
        """Store copies that keep their id, conversation and seq; returns how many were new."""
        ...

    async def delete_messages(self, messages: Sequence[Message]) -> int:
        """Delete these messages (matched by id); returns how many were deleted."""
        ...
