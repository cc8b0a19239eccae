"""MongoDB: the message store only (``messages.py``); users stay in a relational store (docs/database.md)."""
