"""REST routers. Every error is ``{"error": {"code", "message"}}`` with the status of its ErrorCode."""
