"""The per-client ledger every load driver keeps: every send (with its fate and times), every message released
to the application, every connection event. The metrics (experiments/analysis/metrics.py) are computed from
these tables only, so the same functions judge the asyncio swarm and Locust.

Rows are kept as tuples in lists (cheap to append at 100k+/s) and written column-wise to Parquet.
Times are ``time.time_ns()``: senders and receivers live in different processes on one machine, and the wall
clock is the one clock they share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


class SendState(StrEnum):
    ACKED = "acked"  # message.sent arrived: durably stored
    FAILED = "failed"  # an error frame refused it (code in ``error``)
    UNKNOWN = "unknown"  # still unacknowledged when the run ended: may or may not be stored
    WRITTEN = "written"  # ack policy off: the frame was written, no ack exists to wait for
    IN_FLIGHT = "in_flight"  # awaiting its ack (only seen before the run ends)


SEND_COLUMNS = (
    "client", "user", "device", "cmid", "conv", "is_group", "t_send_ns", "t_ack_ns", "state", "seq", "msg_id",
    "attempts", "error", "duplicate", "sent_twice",
)  # fmt: skip
RECV_COLUMNS = (
    "client", "user", "conv", "seq", "msg_id", "sender", "sender_device", "cmid", "t_recv_ns", "t_sent_ns", "via",
)  # fmt: skip
EVENT_COLUMNS = ("client", "t_ns", "event", "code", "detail")
# Every push as it arrived, before the client's ordering buffer: what the server sent, in the order it came.
ARRIVAL_COLUMNS = ("client", "conv", "seq", "t_recv_ns")
# Every history read (REST page of older messages): when, how long, what came back (0 messages: oldest/newest 0;
# status 0: no HTTP answer). The page's timestamps say which tier it reached (experiments/analysis/metrics.py).
HISTORY_COLUMNS = (
    "client", "conv", "before", "t_ns", "latency_us", "status", "count", "oldest_ts_ms", "newest_ts_ms",
)  # fmt: skip
# Every other REST call of the workload (``kind``: search, requests, befriend): when, how long, the HTTP status
# (0: no answer; -1: not made, the in-flight cap) and how many items came back.
REST_COLUMNS = ("client", "kind", "t_ns", "latency_us", "status", "count")


@dataclass(slots=True)
class SendRecord:
    client: int
    user: str
    device: str
    cmid: str
    conv: str
    is_group: bool
    t_send_ns: int
    t_ack_ns: int = 0
    state: SendState = SendState.IN_FLIGHT
    seq: int = 0
    msg_id: str = ""
    attempts: int = 1
    error: str = ""
    duplicate: bool = False
    sent_twice: bool = False

    def acked(self, sent: dict[str, Any], t_ack_ns: int, attempts: int) -> None:
        """The server's ``message.sent`` for this send arrived at ``t_ack_ns``, after ``attempts`` writes."""
        self.state = SendState.ACKED
        self.t_ack_ns = t_ack_ns
        self.seq = sent["seq"]
        self.msg_id = sent["id"]
        self.duplicate = bool(sent.get("duplicate"))
        self.attempts = attempts

    def failed(self, error: dict[str, Any], attempts: int) -> None:
        """The server refused this send for good with ``error``."""
        self.state = SendState.FAILED
        self.error = error.get("code", "")
        self.attempts = attempts

    def row(self) -> tuple[Any, ...]:
        return (
            self.client, self.user, self.device, self.cmid, self.conv, self.is_group, self.t_send_ns,
            self.t_ack_ns, str(self.state), self.seq, self.msg_id, self.attempts, self.error, self.duplicate,
            self.sent_twice,
        )  # fmt: skip


@dataclass
class Ledger:
    sends: list[SendRecord] = field(default_factory=list)
    receives: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    arrivals: list[tuple[Any, ...]] = field(default_factory=list)
    history: list[tuple[Any, ...]] = field(default_factory=list)
    rest: list[tuple[Any, ...]] = field(default_factory=list)

    def receive(
        self,
        client: int,
        user: str,
        conv: str,
        seq: int,
        msg_id: str,
        sender: str,
        sender_device: str,
        cmid: str,
        t_recv_ns: int,
        t_sent_ns: int,
        via: str,
    ) -> None:
        self.receives.append(
            (client, user, conv, seq, msg_id, sender, sender_device, cmid, t_recv_ns, t_sent_ns, via)
        )

    def arrival(self, client: int, conv: str, seq: int, t_recv_ns: int) -> None:
        self.arrivals.append((client, conv, seq, t_recv_ns))

    def history_read(
        self, client: int, conv: str, before: int, t_ns: int, latency_us: int, status: int, count: int,
        oldest_ts_ms: int, newest_ts_ms: int,
    ) -> None:  # fmt: skip
        self.history.append(
            (client, conv, before, t_ns, latency_us, status, count, oldest_ts_ms, newest_ts_ms)
        )

    def rest_call(self, client: int, kind: str, t_ns: int, latency_us: int, status: int, count: int) -> None:
        self.rest.append((client, kind, t_ns, latency_us, status, count))

    def event(self, client: int, t_ns: int, event: str, code: int = 0, detail: str = "") -> None:
        self.events.append((client, t_ns, event, code, detail))

    def finish(self, ack_off: bool) -> None:
        """Close the books: what is still in flight becomes unknown (or written, when no ack exists)."""
        for s in self.sends:
            if s.state is SendState.IN_FLIGHT:
                s.state = SendState.WRITTEN if ack_off else SendState.UNKNOWN

    def write(self, directory: Path, prefix: str) -> dict[str, Path]:
        """Write the tables as Parquet files ``<prefix>.<table>.parquet`` (``history`` and ``rest`` only when such calls were made);
        return their paths."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        directory.mkdir(parents=True, exist_ok=True)
        tables = {
            "sends": (SEND_COLUMNS, [s.row() for s in self.sends]),
            "receives": (RECV_COLUMNS, self.receives),
            "events": (EVENT_COLUMNS, self.events),
            "arrivals": (ARRIVAL_COLUMNS, self.arrivals),
        }
        if self.history:
            tables["history"] = (HISTORY_COLUMNS, self.history)
        if self.rest:
            tables["rest"] = (REST_COLUMNS, self.rest)
        out: dict[str, Path] = {}
        for name, (columns, rows) in tables.items():
            cols = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
            table = pa.table(
                {c: pa.array(list(v), type=_TYPES[c]) for c, v in zip(columns, cols, strict=True)}
            )
            path = directory / f"{prefix}.{name}.parquet"
            pq.write_table(table, path, compression="zstd", compression_level=9)
            out[name] = path
        return out


def _types() -> dict[str, Any]:
    import pyarrow as pa

    ints = (
        "client", "t_send_ns", "t_ack_ns", "seq", "attempts", "t_recv_ns", "t_sent_ns", "t_ns", "code", "before",
        "latency_us", "status", "count", "oldest_ts_ms", "newest_ts_ms",
    )  # fmt: skip
    bools = ("is_group", "duplicate", "sent_twice")
    cols = (
        set(SEND_COLUMNS)
        | set(RECV_COLUMNS)
        | set(EVENT_COLUMNS)
        | set(ARRIVAL_COLUMNS)
        | set(HISTORY_COLUMNS)
        | set(REST_COLUMNS)
    )
    return {c: pa.int64() if c in ints else pa.bool_() if c in bools else pa.string() for c in cols}


class _LazyTypes(dict[str, Any]):
    def __missing__(self, key: str) -> Any:
        self.update(_types())
        return dict.__getitem__(self, key)


_TYPES = _LazyTypes()
