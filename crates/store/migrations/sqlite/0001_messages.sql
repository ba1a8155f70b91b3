-- Messages, their status history, idempotency keys and the outbox.
-- Timestamps are microseconds since the Unix epoch (UTC) in both backends.

CREATE TABLE messages (
    id           TEXT PRIMARY KEY NOT NULL,
    tenant       TEXT NOT NULL,
    direction    TEXT NOT NULL,
    channel      TEXT NOT NULL,
    from_addr    TEXT,
    to_addr      TEXT NOT NULL,
    body         TEXT NOT NULL,
    subject      TEXT,
    client_ref   TEXT,
    metadata     TEXT NOT NULL DEFAULT '{}',
    attachments  TEXT NOT NULL DEFAULT '[]',
    failover     TEXT NOT NULL DEFAULT '[]',
    status       TEXT NOT NULL,
    segments     INTEGER,
    encoding     TEXT,
    connector    TEXT,
    upstream_id  TEXT,
    error_code   TEXT,
    error_detail TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    send_at      INTEGER,
    expires_at   INTEGER
);

-- Listing is per tenant, newest first; ids sort by creation time.
CREATE INDEX messages_tenant_id ON messages (tenant, id);
-- Delivery reports refer to the id the far side gave.
CREATE INDEX messages_upstream ON messages (connector, upstream_id) WHERE upstream_id IS NOT NULL;

CREATE TABLE message_events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL,
    status     TEXT NOT NULL,
    at         INTEGER NOT NULL,
    detail     TEXT
);
CREATE INDEX message_events_message ON message_events (message_id, seq);

CREATE TABLE idempotency_keys (
    tenant        TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    message_id    TEXT NOT NULL,
    response      TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant, key)
) WITHOUT ROWID;

-- Outbound work. A row is due at due_at; a worker that takes it holds a lease until
-- lease_until, after which another worker may take it again.
CREATE TABLE outbox (
    message_id  TEXT PRIMARY KEY NOT NULL,
    due_at      INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until INTEGER
) WITHOUT ROWID;
CREATE INDEX outbox_due ON outbox (due_at);

-- Full-text search over text and subject (the `q` filter), kept in step by triggers.
CREATE VIRTUAL TABLE messages_fts USING fts5 (
    body, subject, content = 'messages', content_rowid = 'rowid', tokenize = 'unicode61'
);
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, body, subject) VALUES (new.rowid, new.body, new.subject);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body, subject)
        VALUES ('delete', old.rowid, old.body, old.subject);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF body, subject ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body, subject)
        VALUES ('delete', old.rowid, old.body, old.subject);
    INSERT INTO messages_fts (rowid, body, subject) VALUES (new.rowid, new.body, new.subject);
END;

-- Small named values the gateway keeps for itself (the cursor signing key).
CREATE TABLE settings (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) WITHOUT ROWID;
