"""Metrics from ledgers and /metrics (pure, tested), report loading and the thesis figure style."""
