"""SQLite stores: the embedded default, no service needed.

One writer connection and one reader connection per database file, in WAL mode so reads never wait for the
writer. Writes to the message store are group-committed: appends and receipt marks that arrive while a
transaction is running share the next one, so throughput grows with load while every caller still returns only
after its own commit. ``BEGIN IMMEDIATE`` takes SQLite's write lock, so several processes may share one file
(a local cluster) without allocating a sequence number twice.

A group commit is one function run in the writer thread: look up which dedup keys exist, read the conversations'
counters, number the new messages, insert them and advance the counters, all inside ``BEGIN IMMEDIATE``; a
duplicate never consumes a number.

Layout: ``db.py`` (the threads, transactions, migrations runner), ``schema.py``, ``users.py``, ``messages.py``; the
SQL shared with MySQL is in strategies/store/sql.
"""
