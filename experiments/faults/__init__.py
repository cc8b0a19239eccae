"""Fault injectors: a loopback TCP fault proxy, node kill/restart, private backend instances to restart."""
