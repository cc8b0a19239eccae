"""MySQL / MariaDB stores (aiomysql, InnoDB): users and social graph, and messages, so MySQL and MongoDB can be
compared on the same workload. The schema, its indexes and why are in docs/database.md.

* Migrations are numbered lists of statements, applied on start under a named lock (``GET_LOCK``) so nodes that
  start together migrate once; the applied version lives in ``<prefix>wsim_meta``.
* User-keyed tables (users, friends, blocks, user_groups) are split into ``shards`` physical tables by a hash of
  the user id (``users.shard``). Rows a query needs live in one shard whenever the query is keyed by one user; only a
  display-name search visits every shard.
* Read/write splitting (user store only): with ``replica_dsn``, only the reads in ``users._REPLICA_READS`` go to the
  replica; every cache fill, every read that decides a write or an answer about security, and a user's read right
  after that user's own write on this node go to the primary (a lagging replica would put the old value back in a
  cache for its whole TTL, or show a user the world before their own change).
* Replica health (``db.Replica``): per-query timeout, a circuit breaker, a heartbeat row for the lag and a lag
  bound; a replica read that cannot be served by the replica is served by the primary and counted. The node starts
  without its replica and attaches it when it answers.
* Messages: group commit like the SQLite store. A batch locks its conversations' rows (``SELECT ... FOR UPDATE``,
  in sorted order so two nodes cannot deadlock on each other), skips drafts whose dedup key is stored, gives the
  rest ``last_seq + 1, + 2...`` and commits. Sequence numbers are therefore gap-free and never repeat, across any
  number of nodes; a dedup key stored by a racing node in another conversation makes the transaction fail on the
  unique index and the batch is retried (it then finds the original).

Layout: ``db.py`` (pools, replica, transactions, migrations runner), ``schema.py``, ``users.py``, ``messages.py``;
the SQL shared with SQLite is in strategies/store/sql.
"""
