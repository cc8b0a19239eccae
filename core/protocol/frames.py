"""Every frame of the wsim JSON protocol (docs/protocol.md is written against this module).

Frames are JSON objects discriminated by ``type`` with dotted lowercase names. ``ClientFrame`` lists what a
device may send, ``ServerFrame`` what the server sends; nothing else is accepted or emitted.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

CONV_PATTERN = r"^(d:[1-9][0-9]{0,18}:[1-9][0-9]{0,18}|g:[1-9][0-9]{0,18})$"
ID_PATTERN = r"^[1-9][0-9]{0,18}$"
DEVICE_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
CMID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
MAX_SEQ = 2**53 - 1

Conv = Annotated[str, Field(pattern=CONV_PATTERN, max_length=44)]
IdStr = Annotated[str, Field(pattern=ID_PATTERN)]
SeqInt = Annotated[int, Field(ge=0, le=MAX_SEQ)]


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _ClientFrame(_Frame):
    """Strict types (issue 14, L5): a seq of ``"3"`` or ``true`` is ``invalid``, never coerced."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    # A client-chosen request id: an ``error`` answering this frame (and ``pong``, ``sync.done``) echoes it, so
    # two requests in flight can be told apart (issue 14, gap 7).
    req: Annotated[str, Field(pattern=CMID_PATTERN)] | None = None


# --------------------------------------------------------------------------- client -> server


class Auth(_ClientFrame):
    """First frame on a socket (unless the handshake carried ``Authorization: Bearer``)."""

    type: Literal["auth"]
    token: Annotated[str, Field(min_length=1, max_length=4096)]
    device: Annotated[str, Field(pattern=DEVICE_PATTERN)] | None = None


class AuthRenew(_ClientFrame):
    """A fresh access token for an open socket, sent before the current one expires."""

    type: Literal["auth.renew"]
    token: Annotated[str, Field(min_length=1, max_length=4096)]


class Ping(_ClientFrame):
    type: Literal["ping"]
    ts: int | None = None


class MessageSend(_ClientFrame):
    type: Literal["message.send"]
    cmid: Annotated[str, Field(pattern=CMID_PATTERN)]
    conv: Conv
    kind: Literal["text", "image", "file"] = "text"
    text: str | None = None
    file: IdStr | None = None
    # Reply / quote: the seq of a message of the same conversation that the sender may read.
    reply_to: SeqInt | None = None


class MessageAck(_ClientFrame):
    """Cumulative delivery ack: this device holds every message of ``conv`` up to ``seq``."""

    type: Literal["message.ack"]
    conv: Conv
    seq: SeqInt


class MessageRead(_ClientFrame):
    """The user has read ``conv`` up to ``seq`` (monotonic: a lower value is ignored)."""

    type: Literal["message.read"]
    conv: Conv
    seq: SeqInt


class MessageRecall(_ClientFrame):
    type: Literal["message.recall"]
    id: IdStr


class Sync(_ClientFrame):
    """Ask for what this device missed: everything after each cursor; a conversation without a cursor gets its
    recent history. Answered with ``sync.batch`` frames and one ``sync.done``."""

    type: Literal["sync"]
    cursors: dict[Conv, SeqInt] = Field(default_factory=dict, max_length=5000)
    limit: Annotated[int, Field(ge=1, le=1000)] = 200
    # Write fan-out timeline only (store.timeline.kind = write): the device's inbox cursor; 0 = from the start.
    # When the server keeps inboxes, the answer is the inbox after it and ``cursors`` is ignored.
    inbox: SeqInt | None = None


class Typing(_ClientFrame):
    type: Literal["typing"]
    conv: Conv


ClientFrame = Annotated[
    Auth | AuthRenew | Ping | MessageSend | MessageAck | MessageRead | MessageRecall | Sync | Typing,
    Field(discriminator="type"),
]
CLIENT_FRAME_ADAPTER: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)
CLIENT_FRAME_TYPES: tuple[str, ...] = (
    "auth", "auth.renew", "ping", "message.send", "message.ack", "message.read", "message.recall", "sync",
    "typing",
)  # fmt: skip


# --------------------------------------------------------------------------- server -> client


class AuthOk(_Frame):
    type: Literal["auth.ok"] = "auth.ok"
    user: str
    device: str
    node: str
    heartbeat_s: float
    ack: str  # the server's ack policy: "three_state" or "off"
    server_ts: int
    token_expires: int  # ms since epoch: renew before this


class Pong(_Frame):
    type: Literal["pong"] = "pong"
    ts: int | None = None
    server_ts: int
    req: str | None = None


class MessageSent(_Frame):
    """The 'sent' state: the message is durably stored with this id and seq."""

    type: Literal["message.sent"] = "message.sent"
    cmid: str
    id: str
    conv: str
    seq: int
    ts: int
    duplicate: bool = False  # true when this answers a resend of an already stored message


class MessageNew(_Frame):
    type: Literal["message.new"] = "message.new"
    msg: dict[str, Any]


class Receipt(_Frame):
    """``user`` has received (``delivered``) or read (``read``) ``conv`` up to the given seq."""

    type: Literal["receipt"] = "receipt"
    conv: str
    user: str
    delivered: int | None = None
    read: int | None = None


class SyncBatch(_Frame):
    type: Literal["sync.batch"] = "sync.batch"
    conv: str
    messages: list[dict[str, Any]]
    last_seq: int  # newest seq in the conversation when the batch was read
    more: bool  # more messages after the last one in this batch: ask again with the new cursor
    first_seq: int = 1  # the first seq this user may read (later group members start after 1)


class SyncDone(_Frame):
    type: Literal["sync.done"] = "sync.done"
    more: bool  # some conversation had more than ``limit`` messages: send ``sync`` again
    inbox: int | None = None  # answer to an inbox sync: the cursor to send next time
    req: str | None = None  # the ``req`` of the sync frame this answers


class PresenceFrame(_Frame):
    type: Literal["presence"] = "presence"
    user: str
    online: bool
    devices: int


class TypingEvent(_Frame):
    type: Literal["typing"] = "typing"
    conv: str
    user: str


class Notify(_Frame):
    """Changes outside the message stream: friend requests, friendship, blocks, group membership/role."""

    type: Literal["notify"] = "notify"
    event: str
    data: dict[str, Any]


class SyncRequired(_Frame):
    """The server may have failed to push some messages (bus gap, node failover): send ``sync`` now."""

    type: Literal["sync.required"] = "sync.required"
    reason: str


class ErrorFrame(_Frame):
    type: Literal["error"] = "error"
    code: str
    message: str
    ref: str | None = None  # the cmid (or frame type) the error answers
    retry_after_ms: int | None = None
    req: str | None = None  # the ``req`` of the frame the error answers, when it had one


ServerFrame = (
    AuthOk
    | Pong
    | MessageSent
    | MessageNew
    | Receipt
    | SyncBatch
    | SyncDone
    | PresenceFrame
    | TypingEvent
    | Notify
    | SyncRequired
    | ErrorFrame
)
