"""Swappable mechanisms under study. Each kind is a package with ``base.py`` (the interface and its semantics),
``config.py`` (one pydantic model per implementation, discriminated by ``kind`` and naming its class; their union
is the kind's list of strategies), ``__init__.py`` (the registry, derived from that union) and one module per
technology. docs/architecture.md, "How to add a strategy"."""
