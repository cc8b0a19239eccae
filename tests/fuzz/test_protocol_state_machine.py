"""A Hypothesis state machine over the WebSocket protocol, driven through the real session, codec and services
of an in-process node (SQLite store, local bus): only the socket is replaced, by a wire that keeps what the server
wrote until the model client reads it, so frames can be lost on a disconnect.

Four devices (alice on two, bob, carol) in a group and a direct chat do random interleavings of: connect (auth,
then sync from the device's cursors, then resend of unacknowledged sends with the same cmid), send, resend of an
earlier cmid, read some of what arrived, ack, read mark, recall, disconnect (with or without losing what was in
flight). Each model device is the real client: a :class:`core.sdk.session.ClientSession` (hello, sync and its
paging, outbox and resends, ordering and de-duplication, cumulative acks) driven as the SDK drives it, so the
machine checks the real client logic against the real server. Only the deliberate faults bypass it: a resend of
an earlier cmid is a raw frame, and a disconnect may lose what was on the wire. The sessions ask for sync pages of
5 (``limit``, added on the wire) so that paging is exercised.

Invariants, after every step: no message shown twice on a device, per-conversation order (strictly increasing,
contiguous seqs), a resend acknowledged with the original id and seq, nothing shown that nobody sent. At the end
of each run (every device reconnects and syncs): every acknowledged message is in the history, no cmid stored
twice, every device has seen every message of its conversations, and every recall is visible on every member's
device.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from core.app import build_node, start_node, stop_node
from core.errors import CloseCode
from core.models import Track
from core.node import Node
from core.sdk.session import ClientSession, Outgoing, Released, SendAcked
from core.transport.link import SessionLink
from tests.support.server import settings_for_test

_names = itertools.count()


class ModelWire(SessionLink):
    """A device link whose wire is a list: ``_write`` hands the frame to the model device's inbox."""

    TRANSPORT = "model"

    def __init__(self, node: Node, device: Device) -> None:
        super().__init__(node)
        self.model = device

    async def _write(self, frame: str, track: Track | None) -> bool:
        if self.model.link is not self:
            return False  # the device is gone: the frame is lost on the wire
        self.model.inbox.append(orjson.loads(frame))
        return True

    async def _close_wire(self, code: CloseCode, reason: str) -> None:
        self.model.closes.append(int(code))


# The model's clock never moves: no gap repair or resend timer fires mid-run (Hypothesis replays must see the
# same frames); holes are filled by the reconnect syncs and the final sync.
NOW = 0.0
SYNC_PAGE = 5


@dataclass
class Device:
    user: int
    name: str
    token: str
    session: ClientSession[None]
    link: ModelWire | None = None
    inbox: list[dict[str, Any]] = field(default_factory=list)
    shown: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    acked: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # cmid -> (id, conv, seq)
    # Our own messages by (conv, seq), from message.sent and sync batches: the session releases them as None.
    own: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    closes: list[int] = field(default_factory=list)

    @property
    def outbox(self) -> dict[str, Outgoing[None]]:
        """Sends not acknowledged yet (the session's)."""
        return self.session.outbox


class ProtocolMachine(RuleBasedStateMachine):
    loop: asyncio.AbstractEventLoop
    node: Node

    def __init__(self) -> None:
        super().__init__()
        self.devices: list[Device] = []
        self.convs: list[str] = []
        self.members: dict[str, set[int]] = {}
        self.sent_texts: dict[str, str] = {}  # cmid -> text, every send ever made
        self.recalled: set[str] = set()
        self._cmids = itertools.count()
        self.run(self._setup())

    # ------------------------------------------------------------------ plumbing
    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def _setup(self) -> None:
        accounts, social = self.node.accounts, self.node.social
        run_id = next(_names)
        users = []
        for who in ("alice", "bob", "carol"):
            pair = await accounts.register(f"{who}{run_id}", "password-123", None)
            users.append(pair)
        alice, bob, carol = (p.user.id for p in users)
        for other in (bob, carol):
            req = await social.request_friend(alice, other, "")
            await social.accept_request(other, req.id)
        group = await social.create_group(alice, "machine", [bob, carol])
        direct = f"d:{min(alice, bob)}:{max(alice, bob)}"
        gconv = f"g:{group.id}"
        self.convs = [gconv, direct]
        self.members = {gconv: {alice, bob, carol}, direct: {alice, bob}}
        tokens = {p.user.id: p.access_token for p in users}
        for user, name in ((alice, "phone"), (alice, "laptop"), (bob, "phone"), (carol, "phone")):
            session: ClientSession[None] = ClientSession(
                name, user_id=str(user), token=tokens[user], gap_timeout_s=3600
            )
            self.devices.append(Device(user, name, tokens[user], session))

    async def _settle(self) -> None:
        """Let every writer drain its queue onto the model wires."""
        for _ in range(2000):
            links = [d.link for d in self.devices if d.link is not None]
            if not any(link._queue for link in links):
                for _ in range(3):
                    await asyncio.sleep(0)
                if not any(link._queue for link in links):
                    return
            await asyncio.sleep(0)
        raise AssertionError("writers did not drain")

    async def _feed(self, d: Device, frame: dict[str, Any]) -> None:
        if d.link is None:
            return  # disconnected: what the client would send is not sent (the SDK drops it too)
        await d.link.feed_data(orjson.dumps(frame).decode())
        await self._settle()

    def _convs_of(self, d: Device) -> list[str]:
        return [c for c in self.convs if d.user in self.members[c]]

    # ------------------------------------------------------------------ the model client: a ClientSession's driver
    async def _process(self, d: Device, n: int | None = None) -> None:
        count = 0
        while d.inbox and (n is None or count < n):
            frame = d.inbox.pop(0)
            count += 1
            await self._on_frame(d, frame)

    async def _on_frame(self, d: Device, frame: dict[str, Any]) -> None:
        ftype = frame["type"]
        if ftype == "message.sent":
            self._on_sent(d, frame)
        elif ftype == "sync.batch":
            for m in frame["messages"]:
                if m["from"] == d.session.user_id and m["device"] == d.name:
                    d.own[(frame["conv"], m["seq"])] = m
        d.session.receive(frame, NOW)
        self._released(d)
        await self._pump(d)

    def _on_sent(self, d: Device, frame: dict[str, Any]) -> None:
        """Every ``message.sent`` (the session's sends and the raw resends): a resend is acknowledged as the first."""
        cmid, conv, seq = frame["cmid"], frame["conv"], frame["seq"]
        got = (frame["id"], conv, seq)
        first = d.acked.setdefault(cmid, got)
        assert first == got, f"resend of {cmid} acknowledged as {got}, first as {first}"
        d.own[(conv, seq)] = {"id": frame["id"], "conv": conv, "seq": seq, "cmid": cmid, "kind": "text"}

    def _released(self, d: Device) -> None:
        """Show what the session released. Its items for our own messages are None; each ``Released`` is a run of
        consecutive seqs and the runs of one call end at the conversation's cursor, so they are numbered from
        there backwards and looked up in ``own``."""
        runs: dict[str, list[list[dict[str, Any] | None]]] = {}
        for event in d.session.events_received():
            match event:
                case Released(conv=conv, items=items):
                    runs.setdefault(conv, []).append(items)
                case SendAcked(out=out):
                    assert out.cmid in d.acked  # its message.sent went through _on_sent
                case _:
                    pass  # errors drop or keep sends inside the session; receipts etc. are not modelled
        for conv, conv_runs in runs.items():
            end = d.session.ordering.cursor(conv)
            assert end is not None
            numbered: list[list[dict[str, Any]]] = []
            for items in reversed(conv_runs):
                first = end - len(items) + 1
                numbered.append([d.own[(conv, first + i)] if m is None else m for i, m in enumerate(items)])
                for i, m in enumerate(items):
                    assert m is None or m["seq"] == first + i, (d.name, conv, first + i, m["seq"])
                end = first - 1
            for items in reversed(numbered):
                d.shown.setdefault(conv, []).extend(items)

    async def _pump(self, d: Device) -> None:
        """Write what the session queued (dropped while offline: the session writes it again after the hello)."""
        for frame in d.session.frames_to_send():
            await self._feed(d, {**frame, "limit": SYNC_PAGE} if frame["type"] == "sync" else frame)

    async def _send_sync(self, d: Device) -> None:
        """A sync the driver asks for (not the session): its batches still go through the session."""
        await self._feed(d, {"type": "sync", "cursors": d.session.known_cursors(), "limit": SYNC_PAGE})

    async def _connect(self, d: Device) -> None:
        d.link = ModelWire(self.node, d)
        d.link.start_writer()
        d.session.connection_opened()
        await self._pump(d)

    async def _disconnect(self, d: Device, lose_in_flight: bool) -> None:
        link, d.link = d.link, None
        assert link is not None
        if lose_in_flight:
            d.inbox.clear()
        await link.cleanup()
        if not lose_in_flight:
            await self._process(d)  # what arrived before the close, as a reader would (its replies are lost)
        d.session.connection_lost()

    # ------------------------------------------------------------------ rules
    def _online(self) -> list[Device]:
        return [d for d in self.devices if d.link is not None]

    def _offline(self) -> list[Device]:
        return [d for d in self.devices if d.link is None]

    def _pick_online(self, pick: int) -> Device:
        online = self._online()
        return online[pick % len(online)]

    picks = st.integers(min_value=0, max_value=1000)

    @initialize()
    def everyone_connects(self) -> None:
        for d in self.devices:
            self.run(self._connect(d))

    @precondition(lambda self: bool(self._offline()))
    @rule(pick=picks)
    def connect(self, pick: int) -> None:
        offline = self._offline()
        self.run(self._connect(offline[pick % len(offline)]))

    @precondition(lambda self: bool(self._online()))
    @rule(pick=picks, lose=st.booleans())
    def disconnect(self, pick: int, lose: bool) -> None:
        self.run(self._disconnect(self._pick_online(pick), lose))

    @precondition(lambda self: bool(self._online()))
    @rule(pick=picks, which=st.integers(0, 1), text=st.text(alphabet="abcxyz 你好", min_size=1, max_size=8))
    def send(self, pick: int, which: int, text: str) -> None:
        d = self._pick_online(pick)
        convs = self._convs_of(d)
        conv = convs[which % len(convs)]
        cmid = f"{d.name}.{next(self._cmids)}"
        frame = {"type": "message.send", "cmid": cmid, "conv": conv, "text": text}
        self.sent_texts[cmid] = text
        # A blank text is refused (invalid): the session drops it from the outbox on that error.
        d.session.send(cmid, frame, NOW, None)
        self.run(self._pump(d))

    @precondition(lambda self: any(d.acked or d.outbox for d in self._online()))
    @rule(pick=picks, which=picks)
    def resend_same_cmid(self, pick: int, which: int) -> None:
        candidates = [d for d in self._online() if d.acked or d.outbox]
        d = candidates[pick % len(candidates)]
        cmids = sorted(d.acked) + sorted(d.outbox)
        cmid = cmids[which % len(cmids)]
        conv = d.acked[cmid][1] if cmid in d.acked else d.outbox[cmid].frame["conv"]
        frame = {"type": "message.send", "cmid": cmid, "conv": conv, "text": self.sent_texts[cmid]}
        self.run(self._feed(d, frame))  # raw: a faulty client, past the session

    @precondition(lambda self: any(d.inbox for d in self._online()))
    @rule(pick=picks, n=st.integers(1, 8))
    def read_some(self, pick: int, n: int) -> None:
        candidates = [d for d in self._online() if d.inbox]
        self.run(self._process(candidates[pick % len(candidates)], n))

    @precondition(lambda self: bool(self._online()))
    @rule(pick=picks, read=st.booleans())
    def ack_or_read(self, pick: int, read: bool) -> None:
        """The session's cumulative acks, flushed when this rule fires (the driver's timer); or read marks."""
        d = self._pick_online(pick)
        if not read:
            d.session.flush_acks()
            self.run(self._pump(d))
            return
        for conv in self._convs_of(d):
            cursor = d.session.ordering.cursor(conv)
            if cursor is not None and cursor > 0:
                self.run(self._feed(d, {"type": "message.read", "conv": conv, "seq": cursor}))

    @precondition(lambda self: any(d.acked for d in self._online()))
    @rule(pick=picks, which=picks)
    def recall(self, pick: int, which: int) -> None:
        candidates = [d for d in self._online() if d.acked]
        d = candidates[pick % len(candidates)]
        mine = sorted(d.acked)
        msg_id = d.acked[mine[which % len(mine)]][0]
        self.run(self._feed(d, {"type": "message.recall", "id": msg_id}))
        stored = self.run(self.node.messages_store.get_message(int(msg_id)))
        if stored is not None and stored.recalled:
            self.recalled.add(msg_id)

    # ------------------------------------------------------------------ invariants
    @invariant()
    def shown_once_in_order_and_only_what_was_sent(self) -> None:
        for d in self.devices:
            for conv, items in d.shown.items():
                seqs = [m["seq"] for m in items]
                if not seqs:
                    continue
                assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), (d.name, conv, seqs)
                ids = [m["id"] for m in items]
                assert len(set(ids)) == len(ids), (d.name, conv, ids)
                cmids = [m["cmid"] for m in items if m["kind"] == "text"]
                assert len(set(cmids)) == len(cmids), (d.name, conv, cmids)
                assert set(cmids) <= set(self.sent_texts), "shown a message nobody sent"

    def teardown(self) -> None:
        try:
            self.run(self._final_check())
        finally:
            for d in self.devices:
                if d.link is not None:
                    self.run(self._disconnect(d, lose_in_flight=True))

    async def _drain(self, rounds: int) -> None:
        """Let every device process what reached it until nothing more arrives (at most ``rounds`` times)."""
        for _ in range(rounds):
            for d in self.devices:
                await self._process(d)
            await self._settle()
            if not any(d.inbox for d in self.devices):
                break

    async def _final_check(self) -> None:
        for d in self.devices:  # everyone comes back and syncs until quiet
            if d.link is None:
                await self._connect(d)
        await self._drain(50)
        for d in self.devices:
            await self._send_sync(d)  # a last sync: pushes lost to a disconnect come back from the store
            await self._process(d)
        await self._drain(20)
        store = self.node.messages_store
        history = {conv: await store.messages_after(conv, 0, 10_000) for conv in self.convs}
        for conv, msgs in history.items():
            seqs = [m.seq for m in msgs]
            assert seqs == list(range(1, len(seqs) + 1)), (conv, seqs)
            text_cmids = [m.cmid for m in msgs if m.kind.value == "text"]
            assert len(set(text_cmids)) == len(text_cmids), f"a cmid stored twice in {conv}"
        by_id = {str(m.id): m for msgs in history.values() for m in msgs}
        for d in self.devices:
            assert not d.outbox, f"{d.name} still has unacknowledged sends after reconnecting"
            for cmid, (msg_id, conv, seq) in d.acked.items():
                m = by_id.get(msg_id)
                assert m is not None and (m.conv, m.seq, m.cmid) == (conv, seq, cmid), cmid
                assert m.recalled or m.body.get("text") == self.sent_texts[cmid]
            for conv in self._convs_of(d):
                shown = [m["seq"] for m in d.shown.get(conv, [])]
                assert shown == [m.seq for m in history[conv]], (d.name, conv, shown)
                seen_recalled = {m["body"]["id"] for m in d.shown.get(conv, []) if m["kind"] == "recall"}
                seen_recalled |= {m["id"] for m in d.shown.get(conv, []) if m.get("recalled")}
                expected = {i for i in self.recalled if by_id[i].conv == conv}
                assert expected <= seen_recalled, (d.name, conv, expected - seen_recalled)


@pytest.mark.slow
def test_protocol_state_machine(tmp_path: Path) -> None:
    config = settings_for_test(
        tmp_path,
        {
            "sync": {"recent_messages": 10_000},
            # Receipts go out at once: a coalesced receipt flushed by a wall-clock timer would reach an inbox
            # at a moment that depends on the machine's speed, and Hypothesis replays need the same inboxes.
            "limits": {"receipt_window_s": 0},
            "strategies": {"retry": {"kind": "none", "ack_timeout_s": 3600}},
        },
    )
    loop = asyncio.new_event_loop()
    node = build_node(config)
    loop.run_until_complete(start_node(node))
    machine = type("Machine", (ProtocolMachine,), {"loop": loop, "node": node})
    try:
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=100,
                stateful_step_count=60,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        loop.run_until_complete(stop_node(node))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
