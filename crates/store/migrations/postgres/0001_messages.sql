-- Messages, their status history, idempotency keys and the outbox.
-- Timestamps are microseconds since the Unix epoch (UTC) in both backends.

CREATE TABLE messages (
    id           TEXT PRIMARY KEY,
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
    segments     BIGINT,
    encoding     TEXT,
    connector    TEXT,
    upstream_id  TEXT,
    error_code   TEXT,
    error_detail TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    send_at      BIGINT,
    expires_at   BIGINT,
    -- Full-text search over text and subject (the `q` filter).
    search       TSVECTOR GENERATED ALWAYS AS
                 (to_tsvector('simple', body || ' ' || coalesce(subject, ''))) STORED
);

CREATE INDEX messages_tenant_id ON messages (tenant, id);
CREATE INDEX messages_upstream ON messages (connector, upstream_id) WHERE upstream_id IS NOT NULL;
CREATE INDEX messages_search ON messages USING GIN (search);

CREATE TABLE message_events (
    seq        BIGSERIAL PRIMARY KEY,
    message_id TEXT NOT NULL,
    status     TEXT NOT NULL,
    at         BIGINT NOT NULL,
    detail     TEXT
);
CREATE INDEX message_events_message ON message_events (message_id, seq);

CREATE TABLE idempotency_keys (
    tenant        TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    message_id    TEXT NOT NULL,
    response      TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (tenant, key)
);

-- Outbound work. A row is due at due_at; a worker that takes it holds a lease until
-- lease_until, after which another worker may take it again.
CREATE TABLE outbox (
    message_id  TEXT PRIMARY KEY,
    due_at      BIGINT NOT NULL,
    attempts    BIGINT NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until BIGINT
);
CREATE INDEX outbox_due ON outbox (due_at);

-- Small named values the gateway keeps for itself (the cursor signing key).
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
