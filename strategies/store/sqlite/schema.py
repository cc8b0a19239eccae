"""The SQLite schemas: numbered migrations, applied in order on start (``PRAGMA user_version`` holds the version
reached). A migration may hold several statements; trigger bodies stay whole (``split_sql``)."""

USER_SCHEMA = [
    # version 1
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY, username TEXT NOT NULL UNIQUE, display_name TEXT NOT NULL,
        password_hash TEXT NOT NULL, bio TEXT NOT NULL DEFAULT '', avatar_file INTEGER, created_ms INTEGER NOT NULL
    );
    CREATE TABLE sessions (
        family TEXT PRIMARY KEY, user_id INTEGER NOT NULL, device TEXT, created_ms INTEGER NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX sessions_user ON sessions(user_id);
    CREATE TABLE refresh_tokens (
        token_hash TEXT PRIMARY KEY, user_id INTEGER NOT NULL, family TEXT NOT NULL, expires_ms INTEGER NOT NULL,
        used INTEGER NOT NULL DEFAULT 0, device TEXT
    );
    CREATE INDEX refresh_family ON refresh_tokens(family);
    CREATE TABLE friend_requests (
        id INTEGER PRIMARY KEY, from_user INTEGER NOT NULL, to_user INTEGER NOT NULL, message TEXT NOT NULL,
        status TEXT NOT NULL, created_ms INTEGER NOT NULL
    );
    CREATE INDEX friend_requests_to ON friend_requests(to_user, status);
    CREATE INDEX friend_requests_from ON friend_requests(from_user, status);
    CREATE TABLE friends (
        user_id INTEGER NOT NULL, friend_id INTEGER NOT NULL, remark TEXT NOT NULL DEFAULT '',
        since_ms INTEGER NOT NULL, PRIMARY KEY (user_id, friend_id)
    ) WITHOUT ROWID;
    CREATE TABLE blocks (
        user_id INTEGER NOT NULL, target INTEGER NOT NULL, at_ms INTEGER NOT NULL, PRIMARY KEY (user_id, target)
    ) WITHOUT ROWID;
    CREATE TABLE chat_groups (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL, owner INTEGER NOT NULL, created_ms INTEGER NOT NULL,
        dissolved INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE members (
        group_id INTEGER NOT NULL, user_id INTEGER NOT NULL, role TEXT NOT NULL, joined_ms INTEGER NOT NULL,
        joined_seq INTEGER NOT NULL, PRIMARY KEY (group_id, user_id)
    ) WITHOUT ROWID;
    CREATE INDEX members_user ON members(user_id);
    CREATE TABLE files (
        id INTEGER PRIMARY KEY, owner INTEGER NOT NULL, name TEXT NOT NULL, size INTEGER NOT NULL,
        mime TEXT NOT NULL, storage_key TEXT NOT NULL, created_ms INTEGER NOT NULL, width INTEGER, height INTEGER,
        thumb_key TEXT
    );
    CREATE TABLE file_refs (file_id INTEGER NOT NULL, conv TEXT NOT NULL, PRIMARY KEY (file_id, conv)) WITHOUT ROWID;
    """,
]

MESSAGE_SCHEMA = [
    # version 1
    """
    CREATE TABLE conversations (
        conv TEXT PRIMARY KEY, last_seq INTEGER NOT NULL, last_id INTEGER, last_ts INTEGER
    ) WITHOUT ROWID;
    CREATE TABLE messages (
        conv TEXT NOT NULL, seq INTEGER NOT NULL, id INTEGER NOT NULL, sender INTEGER NOT NULL,
        device TEXT NOT NULL, cmid TEXT NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL, ts INTEGER NOT NULL,
        recalled INTEGER NOT NULL DEFAULT 0, dedup_key TEXT,
        PRIMARY KEY (conv, seq)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX messages_id ON messages(id);
    CREATE UNIQUE INDEX messages_dedup ON messages(dedup_key) WHERE dedup_key IS NOT NULL;
    CREATE TABLE marks (
        conv TEXT NOT NULL, user_id INTEGER NOT NULL, delivered INTEGER NOT NULL DEFAULT 0,
        read INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (conv, user_id)
    ) WITHOUT ROWID;
    CREATE INDEX marks_user ON marks(user_id);
    CREATE TABLE dead_letters (
        id INTEGER PRIMARY KEY, msg_id INTEGER NOT NULL, conv TEXT NOT NULL, seq INTEGER NOT NULL,
        user_id INTEGER NOT NULL, device TEXT NOT NULL, attempts INTEGER NOT NULL, reason TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    );
    """,
    # version 2: tiering. The tier job takes the oldest messages first (index on ts).
    """
    CREATE INDEX messages_ts ON messages(ts);
    """,
    # version 3: no query needs marks(user_id) (user_marks reads the full primary key (conv, user_id); every
    # query's plan is checked in tests/unit/test_sqlite_plans.py), and each index costs every write.
    """
    DROP INDEX IF EXISTS marks_user;
    """,
    # ---- version 4: message search (docs/protocol.md "Search"). FTS5 with the trigram tokenizer: any substring
    # of 3+ characters, Chinese included, without a word segmenter. Indexing costs ~15-20 us of writer CPU per
    # message (docs/database.md "Search index cost"), so a commit only queues the id (search_pending) and
    # ``_index_pending`` indexes the queue in batches off the ack path. Rows are keyed by message id; a search
    # joins back to ``messages`` and re-checks window and ``recalled`` there. A recall or a tier move removes
    # the row at once.
    """
    CREATE VIRTUAL TABLE messages_fts USING fts5(text, tokenize = 'trigram');
    CREATE TABLE search_pending (id INTEGER PRIMARY KEY);
    INSERT INTO search_pending (id) SELECT id FROM messages WHERE recalled = 0;
    CREATE TRIGGER messages_search_pending AFTER INSERT ON messages WHEN new.recalled = 0
    BEGIN
        INSERT OR IGNORE INTO search_pending (id) VALUES (new.id);
    END;
    CREATE TRIGGER messages_fts_recall AFTER UPDATE OF recalled ON messages
        WHEN new.recalled = 1 AND old.recalled = 0
    BEGIN
        DELETE FROM messages_fts WHERE rowid = old.id;
    END;
    CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
    BEGIN
        DELETE FROM messages_fts WHERE rowid = old.id;
    END;
    """,
    # ---- end of version 4
]
