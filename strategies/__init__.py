"""Swappable mechanisms under study. Each kind is a package with ``base.py`` (the interface and its semantics),
``config.py`` (one pydantic model per implementation, discriminated by ``kind``), ``__init__.py`` (the registry)
and one module per technology."""
