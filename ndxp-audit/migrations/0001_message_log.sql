-- NDXP message log schema, version 1.
-- Portable SQL: the same text runs on SQLite and PostgreSQL.
-- `record` holds the record's canonical JSON (see ndxp_audit::log), the exact
-- bytes that were hashed plus the hash; the other columns are copies for
-- lookups. Rows are never updated; only a purge (after a checkpoint, see
-- 0002) deletes old ones.

CREATE TABLE message_log (
    writer          TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    transaction_id  TEXT NOT NULL,
    received_at     TEXT NOT NULL,
    hash            TEXT NOT NULL,
    record          TEXT NOT NULL,
    PRIMARY KEY (writer, seq)
);
CREATE INDEX message_log_transaction ON message_log (transaction_id);
CREATE INDEX message_log_received ON message_log (received_at);
