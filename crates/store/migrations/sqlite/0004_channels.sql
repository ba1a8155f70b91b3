-- What the channels need of the store (DESIGN.md section 7).

-- SMPP server accounts (and any other channel session) that are owed notices: receipts
-- for the messages they submitted, and the messages received for their tenant.
CREATE TABLE notice_recipients (
    key        TEXT PRIMARY KEY NOT NULL,
    tenant     TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX notice_recipients_tenant ON notice_recipients (tenant);

-- One row per notice, written in the transaction of the status change or inbound
-- message it announces.
CREATE TABLE notices (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    recipient   TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    -- 'status' or 'received'
    kind        TEXT NOT NULL,
    -- the status announced
    status      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    lease_until INTEGER,
    -- set when delivered, not wanted, or expired
    done_at     INTEGER
);
CREATE INDEX notices_pending ON notices (recipient, done_at, seq);

-- The last presence of each contact (XMPP), per tenant.
CREATE TABLE presence (
    tenant       TEXT NOT NULL,
    address      TEXT NOT NULL,
    availability TEXT NOT NULL,
    status       TEXT,
    at           INTEGER NOT NULL,
    PRIMARY KEY (tenant, address)
);

-- A webhook event that is not about a message (presence.changed) carries its data.
ALTER TABLE webhook_deliveries ADD COLUMN payload TEXT;

-- The bytes of attachments (email parts, CPIM); messages.attachments describes them.
CREATE TABLE attachments (
    message_id   TEXT NOT NULL,
    idx          INTEGER NOT NULL,
    name         TEXT,
    content_type TEXT NOT NULL,
    size         INTEGER NOT NULL,
    data         BLOB NOT NULL,
    PRIMARY KEY (message_id, idx)
);

-- The parts of a message that went in several (a long SMS), each with the far side's
-- id, and what the far side reported for each.
CREATE TABLE upstream_parts (
    connector   TEXT NOT NULL,
    upstream_id TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    part        INTEGER NOT NULL,
    status      TEXT,
    PRIMARY KEY (connector, upstream_id)
);
CREATE INDEX upstream_parts_message ON upstream_parts (message_id);

-- Conversations bridged between channels: a reply from `peer` to `ours` goes back to
-- `reply_to`, from `reply_from`, threaded on `thread`.
CREATE TABLE bridges (
    peer       TEXT NOT NULL,
    ours       TEXT NOT NULL,
    tenant     TEXT NOT NULL,
    reply_to   TEXT NOT NULL,
    reply_from TEXT,
    thread     TEXT,
    message_id TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (peer, ours)
);
