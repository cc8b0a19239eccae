"""The campaign's checker: compares the clients' ledgers with the durable store, after every device resynced.

Pure functions over plain records, so each definition is unit-tested on planted faults
(tests/unit/test_campaign_checker.py). The definitions (docs/reliability.md):

* **lost**: an acknowledged send missing from the store, or a stored message of an acknowledged send missing at
  a member device (each device counts); **undelivered**: the same for a stored message whose send was never
  acknowledged (failed or unknown to its sender: it is stored, so every member must still get it);
* **duplicates stored**: more than one stored message for one (sender, device, cmid);
  **duplicates shown**: a device released a message (by id, or by sender device + cmid) more than once;
* **unexpected**: a device released a message that is not in the store, or one outside its membership window;
* **false errors**: a send answered with an error whose message is in the store anyway;
* **order violations**: per device and conversation, a released seq not above the one before;
* **latency**: store time -> release time of messages a device received live (not by its final resync);
* **recovery**: per fault window, from the injection until the first acknowledgement of a send issued after it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

SendState = Literal["acked", "failed", "unknown"]


@dataclass(frozen=True, slots=True)
class Sent:
    """One logical send (one cmid) as its sender's ledger ends it."""

    user: str
    device: str
    cmid: str
    conv: str
    state: SendState
    t_send_s: float
    t_ack_s: float | None = None
    seq: int | None = None
    msg_id: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Shown:
    """A message a device released to its application (the SDK's ordered, de-duplicated stream)."""

    device: str
    conv: str
    seq: int
    msg_id: str
    sender: str
    sender_device: str
    cmid: str
    t_s: float
    live: bool  # received before the final resync


@dataclass(frozen=True, slots=True)
class Stored:
    """A client message as the store holds it."""

    conv: str
    seq: int
    msg_id: str
    sender: str
    device: str
    cmid: str
    ts_s: float


@dataclass(frozen=True, slots=True)
class Member:
    """A device whose application must end up holding every message of its conversations' windows: for each
    conversation the seqs it may read, ``(first, last)`` inclusive (a removed member's window ends)."""

    device: str
    user: str
    windows: Mapping[str, tuple[int, int]]
    timed: bool = True  # counts toward the live latency (not a device made slow on purpose)
    # Seqs inside a window the device may or may not hold (a membership change raced with these sends).
    uncertain: Mapping[str, tuple[int, int]] = field(default_factory=dict)


@dataclass
class Verdict:
    messages: int = 0
    acked: int = 0
    failed: int = 0
    unknown: int = 0
    stored: int = 0
    lost: int = 0
    undelivered: int = 0
    duplicates_stored: int = 0
    duplicates_shown: int = 0
    unexpected: int = 0
    false_errors: int = 0
    order_violations: int = 0
    live_deliveries: int = 0
    max_latency_s: float = 0.0
    p99_latency_s: float = 0.0
    max_recovery_s: float = 0.0
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not (
            self.lost
            or self.undelivered
            or self.duplicates_stored
            or self.duplicates_shown
            or self.unexpected
            or self.false_errors
            or self.order_violations
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def _note(v: Verdict, kind: str, text: str) -> None:
    bucket = v.examples.setdefault(kind, [])
    if len(bucket) < 5:
        bucket.append(text)


def check(
    sends: Iterable[Sent],
    shown: Iterable[Shown],
    stored: Iterable[Stored],
    members: Iterable[Member],
    windows: Sequence[tuple[float, float]] = (),
) -> Verdict:
    """Judge one fault's run. ``windows`` are the (start, end) times of its injections, for recovery."""
    sends, shown, stored, members = list(sends), list(shown), list(stored), list(members)
    v = Verdict(messages=len(sends), stored=len(stored))
    by_key: dict[tuple[str, str, str], list[Stored]] = defaultdict(list)
    by_id: dict[str, Stored] = {}
    for st in stored:
        by_key[(st.sender, st.device, st.cmid)].append(st)
        by_id[st.msg_id] = st
    for key, copies in by_key.items():
        if len(copies) > 1:
            v.duplicates_stored += len(copies) - 1
            _note(v, "duplicates_stored", f"{key}: seqs {[c.seq for c in copies]}")

    acked_keys: set[tuple[str, str, str]] = set()
    for s in sends:
        key = (s.user, s.device, s.cmid)
        if s.state == "acked":
            v.acked += 1
            acked_keys.add(key)
            if key not in by_key:
                v.lost += 1
                _note(v, "lost", f"acked {key} (seq {s.seq}) is not in the store")
        elif s.state == "failed":
            v.failed += 1
            if key in by_key:
                v.false_errors += 1
                _note(
                    v,
                    "false_errors",
                    f"{key} failed with {s.error!r} but is stored as seq {by_key[key][0].seq}",
                )
        else:
            v.unknown += 1

    shown_at: dict[str, list[Shown]] = defaultdict(list)
    for m in shown:
        shown_at[m.device].append(m)
    latencies: list[float] = []
    for member in members:
        mine = shown_at.get(member.device, [])
        ids = Counter(m.msg_id for m in mine)
        versions: dict[tuple[str, str], set[str]] = defaultdict(set)  # one send shown under several ids
        for m in mine:
            versions[(m.sender_device, m.cmid)].add(m.msg_id)
        v.duplicates_shown += sum(n - 1 for n in ids.values() if n > 1)
        v.duplicates_shown += sum(len(ms) - 1 for ms in versions.values())
        for mid, n in ids.items():
            if n > 1:
                _note(v, "duplicates_shown", f"{member.device} shown {mid} {n} times")
        last_seq: dict[str, int] = {}
        for m in mine:  # in release order
            prev = last_seq.get(m.conv)
            if prev is not None and m.seq <= prev and ids[m.msg_id] == 1:
                v.order_violations += 1
                _note(v, "order_violations", f"{member.device} in {m.conv}: seq {m.seq} after {prev}")
            last_seq[m.conv] = max(m.seq, prev or 0)
            original = by_id.get(m.msg_id)
            window = member.windows.get(m.conv)
            if original is None or window is None or not window[0] <= m.seq <= window[1]:
                v.unexpected += 1
                _note(
                    v, "unexpected", f"{member.device} shown {m.conv}#{m.seq} ({m.msg_id}), window {window}"
                )
            elif m.live and member.timed:
                latencies.append(max(0.0, m.t_s - original.ts_s))
        held = {m.msg_id for m in mine}
        for st in stored:
            window = member.windows.get(st.conv)
            if window is None or not window[0] <= st.seq <= window[1] or st.device == member.device:
                continue
            maybe = member.uncertain.get(st.conv)
            if maybe is not None and maybe[0] <= st.seq <= maybe[1]:
                continue
            if st.msg_id not in held:
                if (st.sender, st.device, st.cmid) in acked_keys:
                    v.lost += 1
                    _note(v, "lost", f"{member.device} lacks acked {st.conv}#{st.seq}")
                else:
                    v.undelivered += 1
                    _note(v, "undelivered", f"{member.device} lacks stored {st.conv}#{st.seq}")
    v.live_deliveries = len(latencies)
    if latencies:
        latencies.sort()
        v.max_latency_s = round(latencies[-1], 4)
        v.p99_latency_s = round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 4)
    v.max_recovery_s = round(max((recovery(sends, w) for w in windows), default=0.0), 3)
    return v


def recovery(sends: Iterable[Sent], window: tuple[float, float]) -> float:
    """From the injection until the first ack of a send issued after it (the fault's whole outage, as the
    clients saw it); the window's length when nothing issued after it was acknowledged."""
    start, end = window
    acks = [s.t_ack_s for s in sends if s.t_send_s >= start and s.t_ack_s is not None]
    return (min(acks) if acks else end) - start


def resources_back(
    baseline: Mapping[str, float], after: Mapping[str, float], slack: Mapping[str, float]
) -> dict[str, tuple[float, float, bool]]:
    """Per resource: (baseline, after, within ``baseline + slack``)."""
    return {k: (baseline[k], after[k], after[k] <= baseline[k] + slack[k]) for k in slack if k in baseline}
