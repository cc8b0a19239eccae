"""Stable error codes and WebSocket close codes: the contract documented in docs/protocol.md.

Every failure the server reports carries one :class:`ErrorCode`. REST maps it to an HTTP status and the body
``{"error": {"code", "message"}}``; the socket sends an ``error`` frame. Codes never change meaning once
published; clients switch on them, not on messages.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Any

from pydantic import BaseModel


class ErrorCode(StrEnum):
    # request shape
    BAD_FRAME = "bad_frame"  # not JSON, not an object, or no known "type"
    INVALID = "invalid"  # well-formed but a field is wrong (see message)
    TOO_LONG = "too_long"
    TOO_LARGE = "too_large"
    UNSUPPORTED_TYPE = "unsupported_type"
    # identity
    UNAUTHORIZED = "unauthorized"
    TOKEN_EXPIRED = "token_expired"  # noqa: S105 - error code, not a secret
    BAD_CREDENTIALS = "bad_credentials"
    TOKEN_REUSED = "token_reused"  # noqa: S105 - error code, not a secret
    FORBIDDEN = "forbidden"
    # social rules
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    NOT_FRIENDS = "not_friends"
    BLOCKED = "blocked"
    NOT_MEMBER = "not_member"
    GROUP_FULL = "group_full"
    GROUP_DISSOLVED = "group_dissolved"
    # messaging
    CONFLICT = "conflict"  # same client message id, different body
    RECALL_WINDOW = "recall_window"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"  # a backend is down: retry later with the same client message id
    INTERNAL = "internal"


_STATUS: dict[ErrorCode, int] = {
    ErrorCode.BAD_FRAME: 400,
    ErrorCode.INVALID: 422,
    ErrorCode.TOO_LONG: 422,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_TYPE: 415,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.TOKEN_EXPIRED: 401,
    ErrorCode.BAD_CREDENTIALS: 401,
    ErrorCode.TOKEN_REUSED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.ALREADY_EXISTS: 409,
    ErrorCode.NOT_FRIENDS: 403,
    ErrorCode.BLOCKED: 403,
    ErrorCode.NOT_MEMBER: 403,
    ErrorCode.GROUP_FULL: 409,
    ErrorCode.GROUP_DISSOLVED: 410,
    ErrorCode.CONFLICT: 409,
    ErrorCode.RECALL_WINDOW: 403,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.INTERNAL: 500,
}

RETRYABLE: frozenset[ErrorCode] = frozenset({ErrorCode.RATE_LIMITED, ErrorCode.UNAVAILABLE})


def http_status(code: ErrorCode) -> int:
    return _STATUS[code]


class WsimError(Exception):
    """A failure with a stable code, raised by services and rendered by whichever transport carries it."""

    def __init__(self, code: ErrorCode, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    @property
    def status(self) -> int:
        return http_status(self.code)

    def __repr__(self) -> str:
        return f"WsimError({self.code.value!r}, {self.message!r})"


class CloseCode(IntEnum):
    """WebSocket close codes the server uses. 4000-4999 are application codes (RFC 6455 section 7.4.2)."""

    NORMAL = 1000
    GOING_AWAY = 1001  # server shutting down: reconnect (to another node)
    WS_PROTOCOL_ERROR = 1002  # sent by the WebSocket layer: a frame breaking RFC 6455
    INVALID_DATA = 1007  # sent by the WebSocket layer: a text frame that is not UTF-8
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012  # sent by uvicorn to open sockets when the server stops: reconnect
    UNAUTHORIZED = 4001  # no/invalid auth frame, or auth timeout: do not reconnect with the same token
    HEARTBEAT_TIMEOUT = 4002  # missed too many heartbeats
    TOKEN_EXPIRED = 4003  # access token expired on an open socket and was not renewed
    ORIGIN_REJECTED = 4004
    SLOW_CONSUMER = 4008  # outbound queue full: reconnect and sync, nothing is lost
    TOO_MANY_CONNECTIONS = 4009
    SESSION_REVOKED = 4010  # logged out (on any node)
    REPLACED = 4011  # the same device connected again; this older socket is closed
    PROTOCOL_ERROR = 4400  # error budget spent on malformed frames
    RATE_LIMITED = 4029  # kept exceeding the message rate


# Close codes after which a client should not reconnect automatically without user action.
TERMINAL_CLOSE_CODES: frozenset[int] = frozenset(
    {CloseCode.UNAUTHORIZED, CloseCode.SESSION_REVOKED, CloseCode.ORIGIN_REJECTED, CloseCode.REPLACED}
)


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    """The REST error body ``{"error": {"code", "message"}}`` (named in OpenAPI responses)."""

    error: ErrorBody
