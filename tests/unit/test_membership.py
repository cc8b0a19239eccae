"""Recipients of a group message whose member list was read before a membership change (core/services/membership)."""

from __future__ import annotations

from core.clock import FakeClock
from core.services.membership import REMEMBER_S, MembershipNotices, recipients_at


def test_a_member_removed_before_the_message_is_dropped_even_if_the_store_still_lists_it() -> None:
    # "leave" announces first and removes after: the current list may still hold the member
    current = {"1": ["owner", 1], "2": ["member", 1], "3": ["member", 1]}
    assert recipients_at(10, [1, 2, 3], current, {2: 9}) == [1, 3]


def test_a_member_removed_after_the_message_keeps_it() -> None:
    current = {"1": ["owner", 1], "3": ["member", 1]}
    assert sorted(recipients_at(10, [1, 2, 3], current, {2: 11})) == [1, 2, 3]
    assert sorted(recipients_at(10, [1, 2, 3], current, {})) == [1, 2, 3]  # removed on another node, or later


def test_a_member_added_at_or_before_the_message_gets_it_and_a_later_one_does_not() -> None:
    current = {"1": ["owner", 1], "2": ["member", 1], "4": ["member", 10], "5": ["member", 11]}
    assert recipients_at(10, [1, 2], current, {}) == [1, 2, 4]


def test_a_member_removed_and_added_again_counts_from_its_new_joining() -> None:
    current = {"1": ["owner", 1], "2": ["member", 8]}
    assert recipients_at(10, [1], current, {2: 6}) == [1, 2]
    assert recipients_at(7, [1, 2], current, {2: 6}) == [1]


def test_notices_say_nothing_until_one_is_older_than_the_message_and_expire() -> None:
    clock = FakeClock()
    notices = MembershipNotices(clock)
    notices.record("g:1", 5, {"event": "group.renamed", "name": "x"})
    assert notices.before("g:1", 9) is None
    notices.record("g:1", 7, {"event": "group.member_removed", "users": ["3"]})
    notices.record("g:1", 8, {"event": "group.members_added", "users": ["4"]})
    assert notices.before("g:1", 7) is None
    assert notices.before("g:1", 8) == {3: 7}
    assert notices.before("g:1", 9) == {3: 7}
    assert notices.before("g:2", 9) is None
    clock.advance(REMEMBER_S + 1)
    assert notices.before("g:1", 9) is None
