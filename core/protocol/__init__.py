"""Plain-code protocol state machines: no asyncio, no sockets. Fed with frames and ``now``; return what to send."""
