-- Dispatch: which failover step a message is on, what an outbox row is for, and
-- delivery reports that arrived before the send outcome they refer to.
ALTER TABLE messages ADD COLUMN failover_step INTEGER NOT NULL DEFAULT 0;
-- 'send': take the message and send it. 'failover': check, at due_at, whether the step
-- in flight was delivered, and move to the next step if not.
ALTER TABLE outbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'send';

CREATE TABLE early_reports (
    seq          INTEGER PRIMARY KEY,
    connector    TEXT NOT NULL,
    upstream_id  TEXT NOT NULL,
    status       TEXT NOT NULL,
    at           INTEGER NOT NULL,
    error_code   TEXT,
    error_detail TEXT,
    received_at  INTEGER NOT NULL
);
CREATE INDEX early_reports_upstream ON early_reports (connector, upstream_id);

-- Webhooks (DESIGN.md section 6).
CREATE TABLE webhook_subscriptions (
    id              TEXT PRIMARY KEY NOT NULL,
    tenant          TEXT NOT NULL,
    url             TEXT NOT NULL,
    -- The event filter as a JSON array, and as ",a,b," for matching in SQL.
    events          TEXT NOT NULL,
    filter          TEXT NOT NULL,
    secret          TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    disabled_at     INTEGER,
    disabled_reason TEXT
);
CREATE INDEX webhook_subscriptions_tenant ON webhook_subscriptions (tenant);

-- One row per (event, subscription): what is to be delivered, and how it went.
CREATE TABLE webhook_deliveries (
    seq              INTEGER PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    subscription_id  TEXT NOT NULL,
    tenant           TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    message_id       TEXT NOT NULL,
    event_at         INTEGER NOT NULL,
    -- pending, delivered, failed (gave up) or canceled (subscription removed).
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    first_attempt_at INTEGER,
    last_status_code INTEGER,
    last_error       TEXT,
    lease_until      INTEGER
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (subscription_id, message_id, seq);

CREATE TABLE webhook_attempts (
    seq              INTEGER PRIMARY KEY,
    delivery_id      TEXT NOT NULL,
    at               INTEGER NOT NULL,
    duration_ms      INTEGER NOT NULL,
    status_code      INTEGER,
    error            TEXT,
    response_excerpt TEXT
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, seq);
