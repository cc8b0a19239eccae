"""wsim server core: protocol state machines, services, transports and the composition root."""

__version__ = "0.1.0"
