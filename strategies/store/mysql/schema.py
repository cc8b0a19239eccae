"""The MySQL schemas: numbered migrations (lists of idempotent statements), applied by ``Mysql.open`` under a named
lock; the version reached is kept in ``<prefix>wsim_meta``. Table and index choices are explained in
docs/database.md."""

from __future__ import annotations

TABLE_OPTS = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"


def user_migrations(p: str, shards: int) -> list[list[str]]:
    v1: list[str] = [
        f"""CREATE TABLE IF NOT EXISTS `{p}usernames` (
            username VARCHAR(64) NOT NULL PRIMARY KEY, user_id BIGINT NOT NULL
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci""",
        f"""CREATE TABLE IF NOT EXISTS `{p}sessions` (
            family VARCHAR(64) NOT NULL PRIMARY KEY, user_id BIGINT NOT NULL, device VARCHAR(64) NULL,
            created_ms BIGINT NOT NULL, revoked TINYINT NOT NULL DEFAULT 0, KEY sessions_user (user_id)
        ) {TABLE_OPTS}""",
        f"""CREATE TABLE IF NOT EXISTS `{p}refresh_tokens` (
            token_hash VARCHAR(128) NOT NULL PRIMARY KEY, user_id BIGINT NOT NULL, family VARCHAR(64) NOT NULL,
            expires_ms BIGINT NOT NULL, used TINYINT NOT NULL DEFAULT 0, device VARCHAR(64) NULL,
            KEY refresh_family (family)
        ) {TABLE_OPTS}""",
        f"""CREATE TABLE IF NOT EXISTS `{p}friend_requests` (
            id BIGINT NOT NULL PRIMARY KEY, from_user BIGINT NOT NULL, to_user BIGINT NOT NULL,
            message VARCHAR(1024) NOT NULL, status VARCHAR(16) NOT NULL, created_ms BIGINT NOT NULL,
            KEY requests_to (to_user, status), KEY requests_from (from_user, status, to_user)
        ) {TABLE_OPTS}""",
        f"""CREATE TABLE IF NOT EXISTS `{p}chat_groups` (
            id BIGINT NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL, owner BIGINT NOT NULL,
            created_ms BIGINT NOT NULL, dissolved TINYINT NOT NULL DEFAULT 0
        ) {TABLE_OPTS}""",
        f"""CREATE TABLE IF NOT EXISTS `{p}members` (
            group_id BIGINT NOT NULL, user_id BIGINT NOT NULL, role VARCHAR(16) NOT NULL, joined_ms BIGINT NOT NULL,
            joined_seq BIGINT NOT NULL, PRIMARY KEY (group_id, user_id)
        ) {TABLE_OPTS}""",
        f"""CREATE TABLE IF NOT EXISTS `{p}files` (
            id BIGINT NOT NULL PRIMARY KEY, owner BIGINT NOT NULL, name VARCHAR(255) NOT NULL, size BIGINT NOT NULL,
            mime VARCHAR(128) NOT NULL, storage_key VARCHAR(255) NOT NULL, created_ms BIGINT NOT NULL,
            width INT NULL, height INT NULL, thumb_key VARCHAR(255) NULL
        ) {TABLE_OPTS}""",
        f"""CREATE TABLE IF NOT EXISTS `{p}file_refs` (
            file_id BIGINT NOT NULL, conv VARCHAR(64) NOT NULL, PRIMARY KEY (file_id, conv)
        ) {TABLE_OPTS}""",
    ]
    for n in range(shards):
        s = f"{n:02d}"
        v1 += [
            f"""CREATE TABLE IF NOT EXISTS `{p}users_{s}` (
                id BIGINT NOT NULL PRIMARY KEY, username VARCHAR(64) NOT NULL, display_name VARCHAR(128) NOT NULL,
                password_hash VARCHAR(255) NOT NULL, bio TEXT NOT NULL, avatar_file BIGINT NULL,
                created_ms BIGINT NOT NULL
            ) {TABLE_OPTS}""",
            f"""CREATE TABLE IF NOT EXISTS `{p}friends_{s}` (
                user_id BIGINT NOT NULL, friend_id BIGINT NOT NULL, remark VARCHAR(255) NOT NULL DEFAULT '',
                since_ms BIGINT NOT NULL, PRIMARY KEY (user_id, friend_id)
            ) {TABLE_OPTS}""",
            f"""CREATE TABLE IF NOT EXISTS `{p}blocks_{s}` (
                user_id BIGINT NOT NULL, target BIGINT NOT NULL, at_ms BIGINT NOT NULL, PRIMARY KEY (user_id, target)
            ) {TABLE_OPTS}""",
            f"""CREATE TABLE IF NOT EXISTS `{p}user_groups_{s}` (
                user_id BIGINT NOT NULL, group_id BIGINT NOT NULL, PRIMARY KEY (user_id, group_id)
            ) {TABLE_OPTS}""",
        ]
    # v2: refresh_tokens.used holds when the token was exchanged (ms), for the reuse grace period
    v2 = [f"ALTER TABLE `{p}refresh_tokens` MODIFY used BIGINT NOT NULL DEFAULT 0"]
    # v3: one heartbeat row per node, written on the primary and read back from the replica (its lag)
    v3 = [
        f"""CREATE TABLE IF NOT EXISTS `{p}wsim_heartbeat` (
            node VARCHAR(64) NOT NULL PRIMARY KEY, ts_ms BIGINT NOT NULL
        ) {TABLE_OPTS}"""
    ]
    return [v1, v2, v3]


def message_migrations(p: str) -> list[list[str]]:
    return [
        [
            # Head of each conversation: its row lock serializes seq allocation across nodes.
            f"""CREATE TABLE IF NOT EXISTS `{p}conversations` (
                conv VARCHAR(64) NOT NULL PRIMARY KEY, last_seq BIGINT NOT NULL, last_id BIGINT NULL,
                last_ts BIGINT NULL
            ) {TABLE_OPTS}""",
            # Clustered on (conv, seq): a history page is one contiguous range read of the primary key.
            f"""CREATE TABLE IF NOT EXISTS `{p}messages` (
                conv VARCHAR(64) NOT NULL, seq BIGINT NOT NULL, id BIGINT NOT NULL, sender BIGINT NOT NULL,
                device VARCHAR(64) NOT NULL, cmid VARCHAR(128) NOT NULL, kind VARCHAR(16) NOT NULL,
                body MEDIUMTEXT NOT NULL, ts BIGINT NOT NULL, recalled TINYINT NOT NULL DEFAULT 0,
                dedup_key VARCHAR(255) NULL,
                PRIMARY KEY (conv, seq), UNIQUE KEY messages_id (id), UNIQUE KEY messages_dedup (dedup_key),
                KEY messages_ts (ts)
            ) {TABLE_OPTS}""",
            f"""CREATE TABLE IF NOT EXISTS `{p}marks` (
                conv VARCHAR(64) NOT NULL, user_id BIGINT NOT NULL, delivered_seq BIGINT NOT NULL DEFAULT 0,
                read_seq BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (conv, user_id)
            ) {TABLE_OPTS}""",
            f"""CREATE TABLE IF NOT EXISTS `{p}dead_letters` (
                id BIGINT NOT NULL PRIMARY KEY, msg_id BIGINT NOT NULL, conv VARCHAR(64) NOT NULL, seq BIGINT NOT NULL,
                user_id BIGINT NOT NULL, device VARCHAR(64) NOT NULL, attempts INT NOT NULL,
                reason VARCHAR(255) NOT NULL, created_ms BIGINT NOT NULL
            ) {TABLE_OPTS}""",
        ],
        # ---- version 2: message search (docs/protocol.md "Search"). The text as a stored generated column with a
        # case-insensitive collation; the FULLTEXT ngram index on it is added by ``_ensure_fulltext`` where the
        # server has the ngram parser (MySQL; MariaDB has none and searches with LIKE within the caller's
        # conversations). A recall sets body to {} and so clears the column.
        [
            f"""ALTER TABLE `{p}messages` ADD COLUMN search_text MEDIUMTEXT CHARACTER SET utf8mb4
                COLLATE utf8mb4_unicode_ci AS (JSON_UNQUOTE(JSON_EXTRACT(body, '$.text'))) STORED""",
        ],
        # ---- end of version 2
    ]
