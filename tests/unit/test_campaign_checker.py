"""The campaign checker must catch each kind of fault when it is planted in an otherwise clean run."""

from __future__ import annotations

from dataclasses import replace

from experiments.campaign.checker import Member, Sent, Shown, Stored, check, recovery, resources_back

CONV = "g:9"


def clean_run(n: int = 5) -> tuple[list[Sent], list[Shown], list[Stored], list[Member]]:
    sends, shown, stored = [], [], []
    for i in range(1, n + 1):
        sends.append(
            Sent("1", "a", f"c{i}", CONV, "acked", t_send_s=i, t_ack_s=i + 0.01, seq=i, msg_id=f"m{i}")
        )
        stored.append(Stored(CONV, i, f"m{i}", "1", "a", f"c{i}", ts_s=i))
        shown.append(Shown("b", CONV, i, f"m{i}", "1", "a", f"c{i}", t_s=i + 0.05, live=True))
    members = [Member("a", "1", {CONV: (1, 10**9)}), Member("b", "2", {CONV: (1, 10**9)})]
    return sends, shown, stored, members


def test_a_clean_run_passes_with_its_figures() -> None:
    v = check(*clean_run())
    assert v.passed
    assert (v.messages, v.acked, v.stored, v.live_deliveries) == (5, 5, 5, 5)
    assert abs(v.max_latency_s - 0.05) < 1e-6


def test_planted_loss_acked_but_not_stored() -> None:
    sends, shown, stored, members = clean_run()
    v = check(sends, shown[:-1], stored[:-1], members)
    assert v.lost == 1 and not v.passed and "not in the store" in v.examples["lost"][0]


def test_planted_loss_stored_but_missing_at_a_member() -> None:
    sends, shown, stored, members = clean_run()
    v = check(sends, shown[1:], stored, members)
    assert v.lost == 1 and not v.passed


def test_a_stored_unacknowledged_message_must_still_reach_members() -> None:
    sends, shown, stored, members = clean_run()
    sends[2] = replace(sends[2], state="unknown", t_ack_s=None)
    assert check(sends, shown, stored, members).passed  # unknown + delivered: fine
    v = check(sends, [m for m in shown if m.seq != 3], stored, members)
    assert v.undelivered == 1 and v.lost == 0 and not v.passed


def test_planted_duplicates_stored_and_shown() -> None:
    sends, shown, stored, members = clean_run()
    stored.append(Stored(CONV, 6, "m6", "1", "a", "c1", ts_s=6))  # the same cmid stored twice
    shown.append(Shown("b", CONV, 6, "m6", "1", "a", "c1", t_s=6.1, live=True))
    v = check(sends, shown, stored, members)
    assert v.duplicates_stored == 1 and v.duplicates_shown == 1 and not v.passed
    sends, shown, stored, members = clean_run()
    shown.append(shown[1])  # the same message released twice
    v = check(sends, shown, stored, members)
    assert v.duplicates_shown == 1 and v.duplicates_stored == 0 and not v.passed


def test_planted_reorder() -> None:
    sends, shown, stored, members = clean_run()
    shown[1], shown[2] = shown[2], shown[1]
    v = check(sends, shown, stored, members)
    assert v.order_violations == 1 and not v.passed


def test_planted_unexpected_message_and_one_outside_the_window() -> None:
    sends, shown, stored, members = clean_run()
    shown.append(Shown("b", CONV, 9, "m-ghost", "7", "x", "cx", t_s=9, live=True))
    v = check(sends, shown, stored, members)
    assert v.unexpected == 1 and not v.passed
    sends, shown, stored, members = clean_run()
    members[1] = Member("b", "2", {CONV: (1, 3)})  # removed after seq 3: seqs 4 and 5 must not reach it
    v = check(sends, shown, stored, members)
    assert v.unexpected == 2 and v.lost == 0


def test_planted_false_error() -> None:
    sends, shown, stored, members = clean_run()
    sends[0] = replace(sends[0], state="failed", error="unavailable", t_ack_s=None)
    v = check(sends, shown, stored, members)
    assert v.false_errors == 1 and not v.passed


def test_recovery_is_measured_from_the_injection_to_the_first_ack_after_it() -> None:
    sends, *_ = clean_run()
    assert abs(recovery(sends, (2.5, 2.7)) - 0.51) < 1e-9  # c3 was sent at 3, acked at 3.01
    assert recovery([], (1.0, 4.0)) == 3.0


def test_resources_back_near_baseline() -> None:
    got = resources_back({"fds": 40, "tasks": 12}, {"fds": 44, "tasks": 90}, {"fds": 10, "tasks": 20})
    assert got == {"fds": (40, 44, True), "tasks": (12, 90, False)}


def test_an_uncertain_range_is_neither_expected_nor_unexpected() -> None:
    sends, shown, stored, members = clean_run()
    members[1] = Member("b", "2", {CONV: (1, 5)}, uncertain={CONV: (3, 4)})
    assert check(sends, [m for m in shown if m.seq not in (3, 4)], stored, members).passed
    assert check(sends, shown, stored, members).passed
    assert check(sends, [m for m in shown if m.seq != 2], stored, members).lost == 1  # outside it: still lost
