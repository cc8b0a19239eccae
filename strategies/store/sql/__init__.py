"""The SQL both relational stores share (SQLite and MySQL/MariaDB): one statement text per operation, written once
with ``?`` placeholders and SQLite's spelling, turned into the backend's by a :class:`Dialect`; multi-statement
transactions as generators (:data:`Tx`) that each backend drives on its own connection. What is genuinely different
stays in the backend's package: SQLite's writer thread, group commit and FTS5 search; MySQL's pool, replica
routing, sharded tables and migrations."""
