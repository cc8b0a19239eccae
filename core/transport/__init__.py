"""Thin drivers: they feed the sans-I/O session with frames and time, and write what it returns."""
