"""Client faults are logged as one line, rate-limited (issue 14, L1).

A client that sends an invalid UTF-8 text frame or drops an upload half-way is not a server error: uvicorn logged
each as an ERROR with a traceback (and an aborted upload went through the "unhandled error" path), so anyone
could fill the log and hide real errors. Here each becomes at most one WARNING/INFO line per ``interval_s`` per
kind, with the number of faults folded into it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# uvicorn's websockets-sansio driver logs this, with the traceback, and then closes the socket with 1007.
UVICORN_INVALID_UTF8 = "Invalid UTF-8 sequence received from client."


class ClientFaultLog:
    """Counts client faults per kind and lets one log line through per ``interval_s`` (sans-I/O: ``now``
    comes from the injected callable)."""

    def __init__(self, interval_s: float = 10.0, now: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._now = now
        self._next: dict[str, float] = {}
        self._count: dict[str, int] = {}

    def admit(self, kind: str) -> int:
        """Record one fault; returns how many to report now (0: stay silent, it is folded into a later line)."""
        self._count[kind] = self._count.get(kind, 0) + 1
        now = self._now()
        if now < self._next.get(kind, float("-inf")):
            return 0
        self._next[kind] = now + self.interval_s
        return self._count.pop(kind)

    def report(self, kind: str, message: str, level: int = logging.INFO) -> None:
        n = self.admit(kind)
        if n:
            log.log(level, "client fault (%s): %s [%d since the last report]", kind, message, n)


class UvicornClientFaultFilter(logging.Filter):
    """On the ``uvicorn.error`` logger: uvicorn's traceback for an invalid UTF-8 frame becomes one rate-limited
    WARNING line of ours."""

    def __init__(self, faults: ClientFaultLog) -> None:
        super().__init__()
        self.faults = faults

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != UVICORN_INVALID_UTF8:
            return True
        self.faults.report("invalid_utf8", "text frame with invalid UTF-8, closed 1007", logging.WARNING)
        return False


CLIENT_FAULTS = ClientFaultLog()


def install_uvicorn_filter(faults: ClientFaultLog = CLIENT_FAULTS) -> None:
    """Idempotent: one filter on ``uvicorn.error`` whatever number of apps a process creates."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, UvicornClientFaultFilter) for f in logger.filters):
        logger.addFilter(UvicornClientFaultFilter(faults))
