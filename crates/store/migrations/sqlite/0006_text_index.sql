-- The full-text index is brought up to date in bulk, not row by row: indexing each new
-- message in its own commit wrote about a third of the pages of every commit. Messages
-- up to rowid `indexed_to` are in messages_fts; the store writer indexes those after it
-- every so many new messages, and before any search (so a search sees every message
-- committed before it).
CREATE TABLE text_index (indexed_to INTEGER NOT NULL);
INSERT INTO text_index (indexed_to) SELECT coalesce(max(rowid), 0) FROM messages;

DROP TRIGGER messages_fts_insert;
DROP TRIGGER messages_fts_delete;
DROP TRIGGER messages_fts_update;

-- A row not yet indexed has nothing to take out of the index. After a delete the mark
-- comes down to the highest rowid left, so that a rowid given again to a new message
-- is never taken for indexed.
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
WHEN old.rowid <= (SELECT indexed_to FROM text_index) BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body, subject)
        VALUES ('delete', old.rowid, old.body, old.subject);
    UPDATE text_index SET indexed_to = min(indexed_to, (SELECT coalesce(max(rowid), 0) FROM messages));
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF body, subject ON messages
WHEN old.rowid <= (SELECT indexed_to FROM text_index) BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body, subject)
        VALUES ('delete', old.rowid, old.body, old.subject);
    INSERT INTO messages_fts (rowid, body, subject) VALUES (new.rowid, new.body, new.subject);
END;
