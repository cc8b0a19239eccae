"""Storage settings: the hybrid deployment of docs/database.md validates, bad values name their key."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from core.cli import main
from core.config import ConfigError, MaskSecretsFilter, deep_merge, load_settings
from strategies.store.mysql.db import parse_dsn
from strategies.store.mysql.users import shard

HYBRID = {
    "strategies": {
        "store": {
            "users": {
                "kind": "mysql",
                "dsn": "mysql://wsim:pw@db1:3306/wsim",
                "replica_dsn": "mysql://wsim:pw@db2/wsim",
            },
            "messages": {"kind": "mongo", "uri": "mongodb://m1,m2,m3/?replicaSet=rs0", "database": "wsim"},
            "timeline": {"kind": "write"},
            "tiering": {
                "enabled": True,
                "warm": {"kind": "mongo", "uri": "mongodb://m1/", "collection_prefix": "warm_"},
                "cold": {"kind": "s3", "bucket": "archive", "endpoint_url": "http://minio:9000"},
                "schedule_s": 3600,
            },
        },
        "cache": {"kind": "l1+l2", "l2": {"url": "redis://redis:6379/0", "ttl_s": 1800}},
        "dedup": {"kind": "redis", "url": "redis://redis:6379/0"},
    }
}


def test_hybrid_deployment_validates() -> None:
    s = load_settings(None, HYBRID).strategies
    assert (s.store.users.kind, s.store.messages.kind, s.store.timeline.kind) == ("mysql", "mongo", "write")
    assert s.store.tiering.cold.kind == "s3" and s.store.tiering.warm.kind == "mongo"
    assert (s.cache.kind, s.dedup.kind) == ("l1+l2", "redis")
    assert s.cache.kind == "l1+l2" and s.cache.l1.ttl_s == 300 and s.cache.l2.ttl_s == 1800
    assert s.dedup.kind == "redis" and s.dedup.window_s == 300


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"strategies": {"cache": {"kind": "l3"}}}, ["strategies.cache", "'l1+l2'", "'l2'"]),
        ({"strategies": {"store": {"users": {"kind": "mongo"}}}}, ["strategies.store.users", "'mysql'"]),
        (
            {"strategies": {"store": {"users": {"kind": "mysql", "shards": 0}}}},
            ["strategies.store.users.mysql.shards"],
        ),
        ({"strategies": {"store": {"messages": {"kind": "mongo", "write_concern": "2"}}}}, ["write_concern"]),
        (
            {"strategies": {"store": {"tiering": {"cold": {"kind": "s3"}}}}},
            ["strategies.store.tiering.cold.s3.bucket"],
        ),
        ({"strategies": {"store": {"timeline": {"kind": "push"}}}}, ["strategies.store.timeline", "'write'"]),
        # an option that would be ignored is refused: only the user store reads a replica
        (
            {"strategies": {"store": {"messages": {"kind": "mysql", "replica_dsn": "mysql://r@db2/wsim"}}}},
            ["store.messages.replica_dsn", "only the user store"],
        ),
        (
            {
                "strategies": {
                    "store": {"tiering": {"warm": {"kind": "mysql", "replica_dsn": "mysql://r@db2/wsim"}}}
                }
            },
            ["store.tiering.warm.replica_dsn"],
        ),
        (
            {
                "strategies": {
                    "store": {
                        "users": {
                            "kind": "mysql",
                            "replica_dsn": "mysql://r@db2/wsim",
                            "replica_check_s": 5,
                            "replica_max_lag_s": 5,
                        }
                    }
                }
            },
            ["replica_max_lag_s must exceed replica_check_s"],
        ),
        # the hot tier must cover the recall window
        (
            {
                "limits": {"recall_window_s": 3600},
                "strategies": {"store": {"tiering": {"enabled": True, "hot_days": 0.01}}},
            },
            ["hot_days", "recall_window_s"],
        ),
    ],
)
def test_bad_storage_settings_name_the_key(overrides: dict[str, object], expected: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, overrides)
    for fragment in expected:
        assert fragment in str(info.value)


def test_mysql_dsn_parsing() -> None:
    d = parse_dsn("mysql://u%40x:p%3Aw@h:3307/db")
    assert (d.user, d.password, d.host, d.port, d.db) == ("u@x", "p:w", "h", 3307, "db")
    with pytest.raises(ValueError, match="mysql://"):
        parse_dsn("postgres://h/db")
    with pytest.raises(ValueError, match="mysql://"):
        parse_dsn("mysql://h:3306")


def test_shard_is_stable_and_in_range() -> None:
    assert [shard(u, 16) for u in (1, 2, 3)] == [shard(u, 16) for u in (1, 2, 3)]
    assert all(0 <= shard(u, 7) < 7 for u in range(1000))


def test_wsim_config_and_logs_mask_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "wsim.yaml"
    doc = deep_merge(
        HYBRID,
        {
            "auth": {"jwt_secret": "jwt-very-secret"},
            "strategies": {"bus": {"kind": "redis", "url": "redis://:redis-pw@r1:6379/0"}},
        },
    )
    cfg.write_text(yaml.safe_dump(doc))
    assert main(["config", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    for secret in ("pw@", "jwt-very-secret", "redis-pw"):
        assert secret not in out
    shown = yaml.safe_load(out)
    assert shown["strategies"]["store"]["users"]["dsn"] == "mysql://wsim:***@db1:3306/wsim"
    assert shown["strategies"]["store"]["users"]["replica_dsn"] == "mysql://wsim:***@db2/wsim"
    assert shown["auth"]["jwt_secret"] == "***"
    # what the node runs with is untouched
    assert load_settings(cfg).strategies.store.users.dsn == "mysql://wsim:pw@db1:3306/wsim"
    record = logging.LogRecord(
        "x", logging.WARNING, __file__, 1, "cannot reach %s", ("mysql://u:hunter2@h/db",), None
    )
    assert MaskSecretsFilter().filter(record) and record.getMessage() == "cannot reach mysql://u:***@h/db"
