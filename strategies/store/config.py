from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from strategies._registry import StrategyConfig
from strategies.timeline.config import ReadTimelineConfig, TimelineConfig


class SqliteStoreConfig(
    StrategyConfig,
    implementation={
        "store.users": "strategies.store.sqlite.users:SqliteUserStore",
        "store.messages": "strategies.store.sqlite.messages:SqliteMessageStore",
    },
):
    """SQLite in WAL mode. The durability level is ``synchronous``: ``NORMAL`` (the default) makes a commit durable
    against a process crash (kill -9: the commit is in the WAL file, in the OS's page cache) but not against power
    loss or a kernel crash (the WAL is fsynced only at checkpoints); ``FULL`` fsyncs the WAL at every commit and
    survives power loss, at one fsync per group commit (p99 ~8 ms on this machine). docs/database.md."""

    kind: Literal["sqlite"] = "sqlite"
    # Relative paths are resolved against the server's data directory.
    path: str = "wsim.db"
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    # Group commit: appends and marks that arrive together share one transaction, at most this many.
    max_batch: Annotated[int, Field(ge=1, le=10_000)] = 512
    busy_timeout_ms: Annotated[int, Field(ge=0)] = 10_000
    # Page cache per connection (the writer's and the reader's), KiB; SQLite's own default is 2,000 KiB.
    cache_size_kib: Annotated[int, Field(ge=100, le=4_194_304)] = 2000
    # WAL pages after which a commit also checkpoints (copies the WAL's pages into the database file, with an fsync
    # of both); SQLite's default is 1,000. A page rewritten by many commits between two checkpoints is copied
    # once, so a longer interval costs less CPU per message, at a bigger WAL file (4 KiB per page) and, with
    # synchronous NORMAL, a longer span of commits not yet fsynced (lost on power loss, not on a process crash).
    wal_autocheckpoint_pages: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    # Message search: new messages wait in a queue table and are indexed in batches off the ack path: once no
    # append has come for ``search_index_delay_ms`` (the writer is idle), and under sustained load at least every
    # ``search_index_max_lag_ms``. A search drains the queue first, so it never misses a committed message.
    search_index_delay_ms: Annotated[int, Field(ge=10, le=60_000)] = 500
    search_index_max_lag_ms: Annotated[int, Field(ge=10, le=3_600_000)] = 10_000
    search_index_batch: Annotated[int, Field(ge=1, le=100_000)] = 500  # ~10 ms of writer time a batch
    # Delivered/read marks stay in memory (readers see them) up to this long, then are written in one batch; a
    # crash loses at most this much of them (harmless: docs/database.md). 0: with every commit.
    marks_flush_ms: Annotated[float, Field(ge=0, le=60_000)] = 1000.0
    # A commit that would carry fewer than max_batch messages waits this long for more (0: commit at once).
    commit_window_ms: Annotated[float, Field(ge=0, le=100)] = 0.0


class MysqlStoreConfig(
    StrategyConfig,
    implementation={
        "store.users": "strategies.store.mysql.users:MysqlUserStore",
        "store.messages": "strategies.store.mysql.messages:MysqlMessageStore",
    },
    pip_extra="mysql",
):
    """MySQL / MariaDB through aiomysql (InnoDB). A commit is durable as the server's
    ``innodb_flush_log_at_trx_commit`` makes it (1, the default: flushed to disk at every commit)."""

    kind: Literal["mysql"] = "mysql"
    # mysql://user:password@host:port/database (the database is created on start if missing).
    dsn: str = "mysql://root@127.0.0.1:3306/wsim"
    # Optional read replica of the user store: reads that may lag go there (docs/database.md lists which do). Only
    # the user store uses it: a message store refuses it (history right after a send must see the send).
    replica_dsn: str | None = None
    # Replica health (docs/database.md, "Replica failure modes"): a replica read that takes longer than this is
    # abandoned and served by the primary;
    replica_read_timeout_s: Annotated[float, Field(gt=0)] = 1.0
    # this many consecutive replica failures open the circuit breaker: reads go to the primary for
    # replica_breaker_open_s, then one read probes the replica again;
    replica_breaker_failures: Annotated[int, Field(ge=1)] = 3
    replica_breaker_open_s: Annotated[float, Field(gt=0)] = 5.0
    # every replica_check_s the node writes its heartbeat row on the primary, reads it back from the replica (the
    # lag) and attaches a replica that was down; reads go to the primary while the lag exceeds replica_max_lag_s.
    replica_check_s: Annotated[float, Field(gt=0)] = 1.0
    replica_max_lag_s: Annotated[float, Field(gt=0)] = 5.0
    # User-keyed tables are split into this many physical tables by a hash of the user id. Fixed at creation:
    # starting with a different number fails (re-sharding is a data migration, not a setting).
    shards: Annotated[int, Field(ge=1, le=1024)] = 16
    # Prefix of every table name; a warm tier in the same database uses another prefix ("warm_").
    table_prefix: Annotated[str, Field(pattern=r"^[a-z0-9_]{0,32}$")] = ""
    pool_min: Annotated[int, Field(ge=1)] = 2
    pool_max: Annotated[int, Field(ge=1)] = 16
    # Group commit for the message store: appends that arrive together share one transaction.
    max_batch: Annotated[int, Field(ge=1, le=10_000)] = 512
    connect_timeout_s: Annotated[float, Field(gt=0)] = 5.0

    @model_validator(mode="after")
    def _lag_bound_above_heartbeat(self) -> MysqlStoreConfig:
        if self.replica_dsn is not None and self.replica_max_lag_s <= self.replica_check_s:
            raise ValueError(
                "replica_max_lag_s must exceed replica_check_s: the lag is measured from a heartbeat written every "
                "replica_check_s, so a smaller bound would send every read to the primary"
            )
        return self


class MongoStoreConfig(
    StrategyConfig, implementation="strategies.store.mongo.messages:MongoMessageStore", pip_extra="mongo"
):
    """MongoDB through PyMongo's async API (``AsyncMongoClient``)."""

    kind: Literal["mongo"] = "mongo"
    uri: str = "mongodb://127.0.0.1:27017/?directConnection=true"
    database: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,63}$")] = "wsim"
    # Prefix of every collection name; a warm tier in the same database uses another prefix ("warm_").
    collection_prefix: Annotated[str, Field(pattern=r"^[a-z0-9_]{0,32}$")] = ""
    # "sent" is acknowledged only after this write concern is satisfied. "majority" on a replica set means the
    # write survives the loss of the primary; on a standalone server it means the one server has it.
    write_concern: Literal["majority", "1"] = "majority"
    journal: bool = True
    max_batch: Annotated[int, Field(ge=1, le=10_000)] = 512
    server_selection_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    # Last seq per conversation remembered in this process (a hint: the unique index is the arbiter).
    seq_cache_entries: Annotated[int, Field(ge=0)] = 100_000


UserStoreConfig = Annotated[SqliteStoreConfig | MysqlStoreConfig, Field(discriminator="kind")]
MessageStoreConfig = Annotated[
    SqliteStoreConfig | MysqlStoreConfig | MongoStoreConfig, Field(discriminator="kind")
]


class LocalArchiveConfig(StrategyConfig, implementation="strategies.store.archive:LocalArchive"):
    """Compressed objects in a directory (relative to the data directory)."""

    kind: Literal["local"] = "local"
    # Relative paths are resolved against the server's data directory.
    path: str = "archive"


class S3ArchiveConfig(StrategyConfig, implementation="strategies.store.s3:S3Archive", pip_extra="s3"):
    """Any S3-compatible object store (AWS S3, MinIO, Ceph RGW...) through boto3 in a worker thread."""

    kind: Literal["s3"] = "s3"
    bucket: str
    prefix: str = "wsim-archive/"
    endpoint_url: str | None = None
    region: str | None = None
    # Credentials come from boto3's usual chain (environment, config files, instance role) unless set here.
    access_key_id: str | None = None
    secret_access_key: str | None = None


ArchiveConfig = Annotated[LocalArchiveConfig | S3ArchiveConfig, Field(discriminator="kind")]


class TieringConfig(BaseModel):
    """Hot (primary message store) / warm (a second message store) / cold (compressed files in an object store).

    ``enabled: false`` keeps every message in the primary store (nothing is moved, reads see one tier)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    hot_days: Annotated[float, Field(gt=0)] = 7.0
    warm_days: Annotated[float, Field(gt=0)] = 90.0
    # Any message store kind; a second table/collection in the same database, or a second DSN.
    warm: MessageStoreConfig = Field(default_factory=lambda: SqliteStoreConfig(path="warm.db"))
    cold: ArchiveConfig = Field(default_factory=LocalArchiveConfig)
    # Messages moved per step (one step = copy, then delete from the source).
    batch: Annotated[int, Field(ge=1, le=100_000)] = 2000
    # Run the job inside the server every this many seconds (0 = only through ``wsim tier``).
    schedule_s: Annotated[float, Field(ge=0)] = 0.0


class StoreConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    users: UserStoreConfig = Field(default_factory=lambda: SqliteStoreConfig(path="users.db"))
    messages: MessageStoreConfig = Field(default_factory=lambda: SqliteStoreConfig(path="messages.db"))
    timeline: TimelineConfig = Field(default_factory=ReadTimelineConfig)
    tiering: TieringConfig = Field(default_factory=TieringConfig)

    @model_validator(mode="after")
    def _replica_only_for_users(self) -> StoreConfig:
        # An option that would be accepted and ignored is refused (the message store never reads a replica).
        for where, cfg in (("store.messages", self.messages), ("store.tiering.warm", self.tiering.warm)):
            if isinstance(cfg, MysqlStoreConfig) and cfg.replica_dsn is not None:
                raise ValueError(
                    f"{where}.replica_dsn: only the user store reads a replica (history right after a send "
                    "must see the send); remove it"
                )
        return self
