"""Who receives a group message whose member list was read before a membership change was stored.

A send reads the group's members (``authorize_send``) before its message gets a seq, and stores a batch of
messages a few milliseconds later. A removal, a departure or an addition announced in between gets a seq before
the message, so the member list the send holds is stale: the removed member would be pushed a message from after
its removal notice, the added one would miss a message from inside its window (found by the fault campaign's
``member_removed``, about one run in six). Locking the group for every send would serialize its group commits, so
instead each node remembers, for a short while, the membership notices it stored, and a send that finds one older
than its own seq computes its recipients again from the members as they are now.

Across nodes a change stored by another node is not seen here; the recipient then has the message pushed (a
removed member) or gets it on its next sync (an added one), as before (docs/protocol.md, "Groups").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cachetools import TTLCache

from core.clock import Clock

MEMBERSHIP_EVENTS = frozenset({"group.member_removed", "group.member_left", "group.members_added"})
REMOVALS = frozenset({"group.member_removed", "group.member_left"})
# A send's member list is at most as old as the send itself (its store timeout bounds it); keep notices longer.
REMEMBER_S = 120.0
MAX_GROUPS = 10_000


def recipients_at(
    seq: int,
    snapshot: Sequence[int],
    current: Mapping[str, Sequence[Any]],
    removed_at: Mapping[int, int],
) -> list[int]:
    """The members of the group at message ``seq``.

    ``snapshot`` is the list the send read, ``current`` the members now ({user: [role, joined_seq]}),
    ``removed_at`` the latest removal notice seq per user that this node stored recently. A member counts when it
    joined at or before ``seq`` and was not removed between its joining and ``seq``; a member of the snapshot who
    is gone now without a notice before ``seq`` was removed after it, so the message is still theirs.
    """
    out: list[int] = []
    for key, value in current.items():
        user, joined = int(key), int(value[1])
        removed = removed_at.get(user)
        if joined <= seq and (removed is None or removed >= seq or joined > removed):
            out.append(user)
    here = set(out)
    for user in snapshot:
        if user not in here and str(user) not in current:
            removed = removed_at.get(user)
            if removed is None or removed >= seq:
                out.append(user)
    return out


class MembershipNotices:
    """The membership notices this node stored lately, per group conversation."""

    def __init__(self, clock: Clock) -> None:
        self._notices: TTLCache[str, list[tuple[int, str, tuple[int, ...]]]] = TTLCache(
            MAX_GROUPS, REMEMBER_S, timer=clock.monotonic
        )

    def record(self, conv: str, seq: int, body: Mapping[str, Any]) -> None:
        event = body.get("event")
        if event not in MEMBERSHIP_EVENTS:
            return
        users = tuple(int(u) for u in body.get("users", ()))
        self._notices[conv] = [*self._notices.get(conv, ()), (seq, str(event), users)]

    def before(self, conv: str, seq: int) -> dict[int, int] | None:
        """None when no membership notice older than ``seq`` is remembered (the send's list stands); otherwise
        the latest removal seq per removed user (empty when only additions happened)."""
        notices = self._notices.get(conv)
        if not notices or all(s >= seq for s, _, _ in notices):
            return None
        removed: dict[int, int] = {}
        for s, event, users in notices:
            if s < seq and event in REMOVALS:
                for user in users:
                    removed[user] = max(removed.get(user, 0), s)
        return removed
