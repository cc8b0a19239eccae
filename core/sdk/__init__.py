"""Python client SDK for wsim (used by the tests, the load drivers and anyone scripting a chat)."""

from core.sdk.client import ClientError, SendError, WsimClient

__all__ = ["ClientError", "SendError", "WsimClient"]
