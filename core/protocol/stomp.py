"""STOMP 1.2 frames (sans-I/O): an incremental parser, a serializer, and the bookkeeping that maps STOMP
acknowledgements onto wsim's cumulative delivered marks.

Hand-written on purpose: the Python STOMP libraries are clients (stomp.py keeps its parser inside a threaded
transport; stompest and stomper are unmaintained since 2017/2019) and none parses incrementally, enforces a
frame-size bound before buffering a whole frame, or rejects the malformed input a server must refuse. The grammar
is small (STOMP 1.2 "Augmented BNF"), and the tests in ``tests/unit/test_stomp_codec.py`` pin every rule used.

Rules implemented (https://stomp.github.io/stomp-specification-1.2.html):
* a frame is ``COMMAND EOL *(header EOL) EOL body NUL``; EOL is LF or CR LF; EOLs between frames are heart-beats;
* header names and values are escaped (``\\r \\n \\c \\\\``) except in CONNECT/CONNECTED frames; an undefined
  escape is a fatal error; when a header repeats, the first value wins;
* with ``content-length`` the body is exactly that many octets (it may contain NUL) followed by NUL; without it
  the body ends at the first NUL.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from dataclasses import dataclass, field

CLIENT_COMMANDS = frozenset(
    {
        "CONNECT",
        "STOMP",
        "SEND",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "ACK",
        "NACK",
        "BEGIN",
        "COMMIT",
        "ABORT",
        "DISCONNECT",
    }
)
SERVER_COMMANDS = frozenset({"CONNECTED", "MESSAGE", "RECEIPT", "ERROR"})
_UNESCAPED_COMMANDS = frozenset({"CONNECT", "CONNECTED"})

_ESCAPES = {"\\": "\\\\", "\r": "\\r", "\n": "\\n", ":": "\\c"}
_UNESCAPES = {"\\": "\\", "r": "\r", "n": "\n", "c": ":"}


class StompError(Exception):
    """Malformed input: the server answers with an ERROR frame and closes (STOMP has no recovery after it)."""


@dataclass(frozen=True, slots=True)
class StompFrame:
    command: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)


@dataclass(frozen=True, slots=True)
class HeartBeat:
    """One or more EOLs between frames."""


StompEvent = StompFrame | HeartBeat


def escape(value: str) -> str:
    if not any(c in value for c in _ESCAPES):
        return value
    return "".join(_ESCAPES.get(c, c) for c in value)


def unescape(value: str) -> str:
    if "\\" not in value:
        return value
    out: list[str] = []
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if c == "\\":
            if i + 1 >= n or value[i + 1] not in _UNESCAPES:
                raise StompError(f"undefined escape sequence in header {value[: i + 2]!r}")
            out.append(_UNESCAPES[value[i + 1]])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def serialize(command: str, headers: dict[str, str] | None = None, body: bytes | str = b"") -> bytes:
    """Encode one frame; ``content-length`` is added whenever there is a body (so it may contain NUL)."""
    raw = body.encode() if isinstance(body, str) else body
    lines = [command]
    esc = command not in _UNESCAPED_COMMANDS
    for name, value in (headers or {}).items():
        if name == "content-length":
            continue
        lines.append(f"{escape(name)}:{escape(value)}" if esc else f"{name}:{value}")
    if raw:
        lines.append(f"content-length:{len(raw)}")
    return ("\n".join(lines) + "\n\n").encode() + raw + b"\x00"


def serialize_text(command: str, headers: dict[str, str] | None = None, body: str = "") -> str:
    """The same frame as text, for WebSocket text messages (the body must be UTF-8 text)."""
    return serialize(command, headers, body).decode()


class StompParser:
    """Incremental parser: ``feed`` bytes as they arrive (whole or partial WebSocket messages), get events.

    ``max_frame_bytes`` bounds what is buffered for one frame (headers + body), so a peer cannot make the server
    hold an unbounded partial frame.
    """

    def __init__(self, max_frame_bytes: int = 64 * 1024, max_headers: int = 64) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.max_headers = max_headers
        self._buf = bytearray()

    def feed(self, data: bytes | str) -> list[StompEvent]:
        self._buf += data.encode() if isinstance(data, str) else data
        events: list[StompEvent] = []
        while True:
            beat = self._skip_eols()
            if beat:
                events.append(HeartBeat())
            if not self._buf:
                return events
            frame = self._parse_one()
            if frame is None:
                if len(self._buf) > self.max_frame_bytes:
                    raise StompError(f"frame larger than {self.max_frame_bytes} bytes")
                return events
            events.append(frame)

    def _skip_eols(self) -> bool:
        buf = self._buf
        i = 0
        n = len(buf)
        while i < n:
            if buf[i] == 0x0A:
                i += 1
            elif buf[i] == 0x0D and i + 1 < n and buf[i + 1] == 0x0A:
                i += 2
            else:
                break
        if i:
            del buf[:i]
        return i > 0

    def _parse_one(self) -> StompFrame | None:
        buf = self._buf
        end = buf.find(b"\n\n")
        end_crlf = buf.find(b"\n\r\n")
        if end_crlf != -1 and (end == -1 or end_crlf < end):
            head_end, body_start = end_crlf, end_crlf + 3
        elif end != -1:
            head_end, body_start = end, end + 2
        else:
            return None
        if head_end > self.max_frame_bytes:
            raise StompError(f"frame larger than {self.max_frame_bytes} bytes")
        try:
            head = bytes(buf[:head_end]).decode()
        except UnicodeDecodeError:
            raise StompError("frame headers are not UTF-8") from None
        lines = [ln[:-1] if ln.endswith("\r") else ln for ln in head.split("\n")]
        command = lines[0]
        if command not in CLIENT_COMMANDS and command not in SERVER_COMMANDS:
            raise StompError(f"unknown command {command[:32]!r}")
        if len(lines) - 1 > self.max_headers:
            raise StompError(f"more than {self.max_headers} headers")
        esc = command not in _UNESCAPED_COMMANDS
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name:
                raise StompError(f"malformed header line {line[:64]!r}")
            if esc:
                name, value = unescape(name), unescape(value)
            headers.setdefault(name, value)
        length_text = headers.get("content-length")
        if length_text is not None:
            if not length_text.isdigit():
                raise StompError(f"bad content-length {length_text[:32]!r}")
            length = int(length_text)
            if body_start + length > self.max_frame_bytes:
                raise StompError(f"frame larger than {self.max_frame_bytes} bytes")
            if len(buf) < body_start + length + 1:
                return None
            if buf[body_start + length] != 0:
                raise StompError("body longer than content-length (no NUL after it)")
            body = bytes(buf[body_start : body_start + length])
            del buf[: body_start + length + 1]
        else:
            nul = buf.find(b"\x00", body_start)
            if nul == -1:
                return None
            body = bytes(buf[body_start:nul])
            del buf[: nul + 1]
        return StompFrame(command, headers, body)


# ---------------------------------------------------------------------------------------------- heart-beating


def parse_heart_beat(value: str | None) -> tuple[int, int]:
    """``heart-beat: cx,cy`` -> (cx, cy) in ms; absent means 0,0 (no heart-beats)."""
    if value is None:
        return 0, 0
    parts = value.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise StompError(f"bad heart-beat header {value[:32]!r}")
    return int(parts[0]), int(parts[1])


def negotiate_heart_beat(client: tuple[int, int], server: tuple[int, int]) -> tuple[int, int]:
    """(ms between beats the client must send, ms between beats the server sends); 0 means none.

    ``client`` is the CONNECT header (cx: what the client can send, cy: what it wants to receive); ``server`` the
    CONNECTED one (sx, sy). Spec: client->server every max(cx, sy) unless either is 0; server->client every
    max(sx, cy) unless either is 0.
    """
    cx, cy = client
    sx, sy = server
    upstream = 0 if cx == 0 or sy == 0 else max(cx, sy)
    downstream = 0 if sx == 0 or cy == 0 else max(sx, cy)
    return upstream, downstream


# ---------------------------------------------------------------------------------------------- acknowledgements


@dataclass(slots=True)
class _Outstanding:
    ack_id: str
    conv: str
    seq: int
    # The subscription, when it is in 'client' mode: an ACK then also settles what was given before on it.
    cumulative_on: str | None


class AckLedger:
    """Maps STOMP ACK/NACK (per message, or cumulative per subscription) onto wsim's cumulative delivered marks.

    wsim's ``message.ack {conv, seq}`` means "this device holds every message of ``conv`` up to ``seq``". A STOMP
    client acknowledges single messages (``client-individual``) or everything up to one message on a subscription
    (``client``). The ledger keeps, per conversation, the seqs this connection was given and not yet acked; the
    delivered mark moves to the highest *acked* seq below which nothing given is still unacked. So a mark never
    covers a message this connection was given but the client did not acknowledge. (Messages the connection was
    never given, e.g. sent while it was away, are not known here: they come with ``sync``, and a mark may pass
    them, as a native client's cumulative ack after a sync does.)
    """

    def __init__(self, max_outstanding: int = 10_000) -> None:
        self.max_outstanding = max_outstanding
        self._by_id: dict[str, _Outstanding] = {}
        self._order: deque[_Outstanding] = deque()  # send order, for cumulative ('client' mode) acks
        self._pending: dict[str, list[int]] = {}  # conv -> sorted unacked seqs
        self._acked: dict[str, list[int]] = {}  # conv -> sorted acked seqs not yet folded into a mark
        self._marked: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def given(self, ack_id: str, conv: str, seq: int, cumulative_on: str | None = None) -> None:
        """A MESSAGE with this ``ack`` id carrying (conv, seq) was written. Oldest entries are forgotten past the
        bound (their messages stay in the store; the tracker retries or dead-letters them)."""
        if ack_id in self._by_id:
            return
        entry = _Outstanding(ack_id, conv, seq, cumulative_on)
        self._by_id[ack_id] = entry
        self._order.append(entry)
        pend = self._pending.setdefault(conv, [])
        if seq not in pend:
            insort(pend, seq)
        while len(self._by_id) > self.max_outstanding:
            old = self._order.popleft()
            if self._by_id.pop(old.ack_id, None) is not None:
                self._drop_pending(old.conv, old.seq)

    def known(self, ack_id: str) -> bool:
        return ack_id in self._by_id

    def ack(self, ack_id: str) -> list[tuple[str, int]]:
        """Settle one message (given in 'client' mode: it and every message given before it on that subscription).

        Returns the (conv, seq) pairs settled; an unknown (or already settled) id settles nothing.
        """
        entry = self._by_id.get(ack_id)
        if entry is None:
            return []
        scope = entry.cumulative_on
        if scope is None:
            return [self._settle(entry)]
        settled: list[tuple[str, int]] = []
        kept: list[_Outstanding] = []
        while self._order:
            e = self._order.popleft()
            if self._by_id.get(e.ack_id) is not e:
                continue
            if e.cumulative_on == scope:
                settled.append(self._settle(e))
            else:
                kept.append(e)
            if e is entry:
                break
        self._order.extendleft(reversed(kept))
        return settled

    def nack(self, ack_id: str) -> tuple[str, int] | None:
        """The client refused this message: forget the id; the seq stays unacked (the tracker redelivers)."""
        entry = self._by_id.pop(ack_id, None)
        if entry is None:
            return None
        return entry.conv, entry.seq

    def _settle(self, entry: _Outstanding) -> tuple[str, int]:
        del self._by_id[entry.ack_id]
        self._drop_pending(entry.conv, entry.seq)
        if entry.seq > self._marked.get(entry.conv, 0):
            insort(self._acked.setdefault(entry.conv, []), entry.seq)
        return entry.conv, entry.seq

    def _drop_pending(self, conv: str, seq: int) -> None:
        pend = self._pending.get(conv)
        if pend is None:
            return
        try:
            pend.remove(seq)
        except ValueError:
            return
        if not pend:
            del self._pending[conv]

    def marks(self, convs: set[str] | None = None) -> list[tuple[str, int]]:
        """New cumulative delivered marks ``(conv, seq)`` that moved since the last call: the highest acked seq
        below every seq given and still unacked (only an acked seq can be a mark)."""
        out: list[tuple[str, int]] = []
        for conv in list(convs if convs is not None else self._acked):
            acked = self._acked.get(conv)
            if not acked:
                continue
            pend = self._pending.get(conv)
            limit = pend[0] if pend else None
            i = len(acked) if limit is None else bisect_left(acked, limit)
            if i == 0:
                continue
            mark = acked[i - 1]
            del acked[:i]
            if not acked:
                del self._acked[conv]
            if mark > self._marked.get(conv, 0):
                self._marked[conv] = mark
                out.append((conv, mark))
        return out
