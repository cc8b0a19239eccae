"""Sans-I/O framing shared by the network buses: per-stream sequence numbers, gap and duplicate detection.

Every frame a node puts on a broker carries ``(publisher, stream, seq)``: ``publisher`` is the node name plus a
random incarnation (a restarted node is a new publisher), ``stream`` is the target node's name or ``*`` for a
broadcast, and ``seq`` counts the frames that publisher sent on that stream (1, 2, 3, ...). The receiving side
keeps, per ``(publisher, stream)``, the highest seq seen and the seqs it skipped. That turns the weak guarantees
of real brokers into something the node can act on:

* a jump (seq > highest + 1) means frames were lost or are late: the node is told to resync its devices (a gap),
  and a skipped frame that arrives late is still delivered (once);
* a seq already delivered is a duplicate (an at-least-once broker redelivering) and is dropped, so envelopes
  reach the hub at most once per frame even over at-least-once brokers;
* a publisher that could not hand a frame to the broker sends a ``gap`` frame on that stream as soon as it can,
  so the loss is reported even when no later frame would reveal it.

The first frame seen from a ``(publisher, stream)`` sets the baseline: frames sent before this node subscribed
were addressed to devices it did not hold (a few frames just below the baseline that arrive late, reordered, are
still delivered once). Receivers forget all baselines when their subscription is re-made
(the bus reports that reconnect as a gap itself), so a reconnect yields one resync, not one per publisher.

Authenticity: anyone who can reach the broker may publish on the cluster's channels, so every frame carries a MAC
under the cluster key (keyed BLAKE2b, 16 bytes, over the header and the payload). A frame whose MAC does not
verify (forged, edited, or from a cluster with another key or prefix) is refused with :class:`ForgedFrameError`
before anything reads it. A replayed genuine frame is caught by the sequence check above (a duplicate), unless the
receiver forgot its baseline (a re-made subscription): it then re-delivers an envelope that was genuine, which
devices drop by ``seq``.

Wire format: an ASCII header line ``v2|<kind>|<publisher>|<stream>|<seq>|<mac hex>\\n`` then the opaque payload.
Node names are ``[A-Za-z0-9_.-]`` (config-validated), so the separators cannot occur inside a field.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import Enum

BROADCAST = "*"
_VERSION = b"v2"
_MAC_BYTES = 16
_BASELINE_WINDOW = 64


class FrameKind(Enum):
    DATA = "d"
    GAP = "g"  # "I lost frames for this stream up to seq": the receiver resyncs


@dataclass(frozen=True, slots=True)
class BusFrame:
    kind: FrameKind
    publisher: str
    stream: str
    seq: int
    payload: bytes = b""


class BadFrameError(ValueError):
    """Not a wsim bus frame (malformed header)."""


class ForgedFrameError(BadFrameError):
    """A well-formed frame whose MAC does not verify under this cluster's key."""


def frame_key(cluster_key: bytes, prefix: str) -> bytes:
    """The MAC key of one cluster: bound to its prefix, so two clusters sharing a key cannot feed each other."""
    return hmac.new(cluster_key, b"wsim-bus-frame|" + prefix.encode(), hashlib.sha256).digest()


def _mac(key: bytes, head: bytes, payload: bytes) -> bytes:
    # Keyed BLAKE2b is a MAC by design (RFC 7693) and one pass, where HMAC-SHA256 hashes twice: measured about
    # half the cost per frame here (docs/cluster.md). One shot: the concatenation costs far less than a hash.
    return hashlib.blake2b(b"%s\n%s" % (head, payload), key=key, digest_size=_MAC_BYTES).hexdigest().encode()


def encode_frame(frame: BusFrame, key: bytes) -> bytes:
    head = b"|".join(
        (
            _VERSION,
            frame.kind.value.encode(),
            frame.publisher.encode(),
            frame.stream.encode(),
            str(frame.seq).encode(),
        )
    )
    return b"%s|%s\n%s" % (head, _mac(key, head, frame.payload), frame.payload)


def decode_frame(data: bytes, key: bytes) -> BusFrame:
    line, sep, payload = data.partition(b"\n")
    head, bar, mac = line.rpartition(b"|")
    parts = head.split(b"|")
    if not sep or not bar or len(parts) != 5 or parts[0] != _VERSION:
        raise BadFrameError(f"not a wsim bus frame: {data[:60]!r}")
    if not hmac.compare_digest(_mac(key, head, payload), mac):
        raise ForgedFrameError(f"bus frame MAC does not verify: {line[:80]!r}")
    try:
        kind = FrameKind(parts[1].decode())
        seq = int(parts[4])
    except ValueError as exc:
        raise BadFrameError(f"bad wsim bus frame header {head[:80]!r}") from exc
    return BusFrame(kind, parts[2].decode(), parts[3].decode(), seq, payload)


def new_publisher_id(node: str) -> str:
    return f"{node}#{secrets.token_hex(4)}"


@dataclass(slots=True)
class Received:
    """What to do with one received frame."""

    deliver: bool  # hand the payload to the node's handler
    gap: str | None = None  # report a gap with this reason
    duplicate: bool = False


@dataclass(slots=True)
class _StreamState:
    last: int
    missing: set[int] = field(default_factory=set)


class Sequencer:
    """Publisher side: numbers frames per stream and remembers the streams owed a gap notice."""

    def __init__(self, publisher: str) -> None:
        self.publisher = publisher
        self._seq: dict[str, int] = {}
        self._owed: dict[str, int] = {}

    def data(self, stream: str, payload: bytes) -> BusFrame:
        seq = self._seq.get(stream, 0) + 1
        self._seq[stream] = seq
        return BusFrame(FrameKind.DATA, self.publisher, stream, seq, payload)

    def failed(self, frames: list[BusFrame]) -> None:
        """These frames did not reach the broker: their streams are owed a gap notice."""
        for f in frames:
            self._owed[f.stream] = max(self._owed.get(f.stream, 0), f.seq)

    def owed(self) -> list[BusFrame]:
        """Gap notices still to send (call :meth:`gap_sent` for each one the broker accepted)."""
        return [BusFrame(FrameKind.GAP, self.publisher, s, q) for s, q in self._owed.items()]

    def gap_sent(self, frame: BusFrame) -> None:
        if self._owed.get(frame.stream, 0) <= frame.seq:
            self._owed.pop(frame.stream, None)

    @property
    def owes(self) -> bool:
        return bool(self._owed)


class GapDetector:
    """Receiver side: per (publisher, stream), deliver each seq at most once and report jumps as gaps.

    ``max_missing`` bounds the skipped seqs remembered per stream (a late frame older than that is dropped as
    a duplicate: the gap already made the devices resync, so nothing is lost). ``max_streams`` bounds the
    streams remembered (oldest forgotten first; a forgotten stream starts a new baseline).
    """

    def __init__(self, own_publisher: str, max_missing: int = 4096, max_streams: int = 4096) -> None:
        self._own = own_publisher
        self._max_missing = max_missing
        self._max_streams = max_streams
        self._streams: OrderedDict[tuple[str, str], _StreamState] = OrderedDict()

    def reset(self) -> None:
        """Forget every baseline (the subscription was re-made and reported as a gap already)."""
        self._streams.clear()

    def receive(self, frame: BusFrame) -> Received:
        if frame.publisher == self._own:
            return Received(deliver=False)  # our own broadcast, already delivered in-process
        key = (frame.publisher, frame.stream)
        st = self._streams.get(key)
        if frame.kind is FrameKind.GAP:
            if st is not None:
                st.last = max(st.last, frame.seq)
                st.missing.clear()
            return Received(deliver=False, gap=f"publisher {frame.publisher} lost frames on {frame.stream}")
        if st is None:
            # Frames just below the baseline may still arrive (a reordering at the start): they were never
            # delivered, so they are remembered like holes and delivered once if they come.
            below = range(max(1, frame.seq - _BASELINE_WINDOW), frame.seq)
            self._streams[key] = _StreamState(frame.seq, set(below))
            if len(self._streams) > self._max_streams:
                self._streams.popitem(last=False)
            return Received(deliver=True)
        self._streams.move_to_end(key)
        seq = frame.seq
        if seq == st.last + 1:
            st.last = seq
            return Received(deliver=True)
        if seq > st.last + 1:
            skipped = range(st.last + 1, seq)
            st.missing.update(skipped[-self._max_missing :])
            while len(st.missing) > self._max_missing:
                st.missing.remove(min(st.missing))
            previous, st.last = st.last, seq
            return Received(
                deliver=True,
                gap=f"{frame.publisher} on {frame.stream}: seq {seq} after {previous}",
            )
        if seq in st.missing:
            st.missing.remove(seq)
            return Received(deliver=True)
        return Received(deliver=False, duplicate=True)
