"""Client-side ledgers of the campaign: every send with its fate, every message a device released.

A :class:`Device` wraps one SDK client. Its send's fate is read from the frames themselves (a listener on the
client): ``message.sent`` makes it *acked* (even after the caller stopped waiting), a final error frame makes it
*failed* (``unavailable`` and ``rate_limited`` are not final: the SDK resends them), and anything else still
open when the books close is *unknown*. Releases come from the SDK's ordered, de-duplicated ``messages`` queue:
exactly what an application would show.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed

from core.sdk import WsimClient
from core.sdk.client import ClientError
from experiments.campaign.checker import Member, SendState, Sent, Shown, Stored

RETRIED_CODES = frozenset({"unavailable", "rate_limited"})


@dataclass
class _Send:
    user: str
    device: str
    cmid: str
    conv: str
    t_send_s: float
    text: str = ""
    state: SendState | None = None
    t_ack_s: float | None = None
    seq: int | None = None
    msg_id: str | None = None
    error: str | None = None

    def final(self) -> Sent:
        return Sent(
            self.user, self.device, self.cmid, self.conv, self.state or "unknown", self.t_send_s, self.t_ack_s,
            self.seq, self.msg_id, self.error,
        )  # fmt: skip


@dataclass
class Book:
    """The ledgers of every device of one fault's run."""

    sends: dict[tuple[str, str], _Send] = field(default_factory=dict)  # (device, cmid) -> send
    shown: list[Shown] = field(default_factory=list)
    resyncing: bool = False
    acks_at: list[float] = field(default_factory=list)

    def final_sends(self) -> list[Sent]:
        return [s.final() for s in self.sends.values()]


class Device:
    """One SDK client with its ledger. ``send`` never raises for a fault: the ledger records the fate."""

    def __init__(self, book: Book, client: WsimClient) -> None:
        self.book = book
        self.client = client
        client.listeners.append(self._on_frame)
        self._collector: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.client.device

    @property
    def user(self) -> str:
        return self.client.user_id

    def start_collecting(self) -> None:
        if self._collector is None:
            self._collector = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        while True:
            m = await self.client.messages.get()
            if m["kind"] != "text":  # system notices (friendships, membership) are not the campaign's traffic
                continue
            self.book.shown.append(
                Shown(
                    self.name,
                    m["conv"],
                    m["seq"],
                    m["id"],
                    m["from"],
                    m["device"],
                    m["cmid"],
                    time.time(),
                    live=not self.book.resyncing,
                )
            )

    def _on_frame(self, frame: dict[str, Any]) -> None:
        ftype = frame.get("type")
        if ftype == "message.sent":
            rec = self.book.sends.get((self.name, frame["cmid"]))
            if rec is not None and rec.state is None:
                rec.state, rec.t_ack_s = "acked", time.time()
                rec.seq, rec.msg_id = frame["seq"], frame["id"]
                self.book.acks_at.append(rec.t_ack_s)
        elif ftype == "error":
            rec = self.book.sends.get((self.name, frame.get("ref") or ""))
            if rec is not None and rec.state is None and frame["code"] not in RETRIED_CODES:
                rec.state, rec.error = "failed", frame["code"]

    async def send(self, conv: str, text: str, *, cmid: str | None = None, timeout: float = 60.0) -> _Send:
        cmid = cmid or uuid.uuid4().hex
        key = (self.name, cmid)
        rec = self.book.sends.get(key)
        if rec is None:
            rec = self.book.sends[key] = _Send(self.user, self.name, cmid, conv, time.time(), text)
        with contextlib.suppress(ClientError):  # the fate is in the ledger (listener), not in the exception
            await self.client.send(conv, text, cmid=cmid, timeout=timeout)
        return rec

    async def resync(self) -> None:
        """Ask for everything after the cursors (what every device does after the faults heal)."""
        cursors = {c: s for c, s in self.client.ordering.cursors().items() if s >= 0}
        with contextlib.suppress(ClientError, ConnectionClosed):  # a dropped socket syncs on its reconnect
            await self.client.send_frame({"type": "sync", "cursors": cursors})

    async def close(self) -> None:
        if self._collector is not None:
            self._collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._collector
        await self.client.close()


async def read_store(auditor: WsimClient, convs: list[str]) -> list[Stored]:
    """Every client message of ``convs`` as the store holds it, through the history API (paged by seq)."""
    out: list[Stored] = []
    for conv in convs:
        after = 0
        while True:
            page = await auditor.history(conv, after=after, limit=200)
            for m in page["messages"]:
                if m["kind"] == "text":
                    out.append(
                        Stored(conv, m["seq"], m["id"], m["from"], m["device"], m["cmid"], m["ts"] / 1000)
                    )
                after = m["seq"]
            if not page["has_newer"]:
                break
    return out


def member(
    device: Device,
    convs: dict[str, tuple[int, int]],
    *,
    timed: bool = True,
    uncertain: dict[str, tuple[int, int]] | None = None,
) -> Member:
    return Member(device.name, device.user, convs, timed, uncertain or {})
